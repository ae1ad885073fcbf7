"""A shop's own Celery project, as a shop writes it: no Django, tasktrail installed right after
``Celery(...)`` and the app configured afterwards. ``SHOP_BROKER_URL`` and ``SHOP_QUEUE`` come from
the test that starts a worker with it; ``TASKTRAIL_*`` reach the recorder from the environment."""

from __future__ import annotations

import os

from celery import Celery

import tasktrail

app = Celery("shop")
tasktrail.install(app)


class Config:
    broker_url = os.environ.get("SHOP_BROKER_URL", "")
    task_default_queue = os.environ.get("SHOP_QUEUE", "shop")
    broker_connection_retry_on_startup = True


app.config_from_object(Config)


@app.task(name="shop.add")
def add(x: int, y: int) -> int:
    return x + y

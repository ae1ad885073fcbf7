"""A shop's Celery app for the heartbeat tests: no Django, a long task, a failing one, a quick
one. ``SHOP_BROKER_URL`` (Redis or RabbitMQ) and ``TASKTRAIL_RECORDER_URL`` come from the test."""

from __future__ import annotations

import os
import time

from celery import Celery

import tasktrail

app = Celery("heartbeat-shop")
tasktrail.install(app, release=os.environ.get("SHOP_RELEASE") or None)
app.conf.update(
    broker_url=os.environ.get("SHOP_BROKER_URL", ""),
    task_default_queue=os.environ.get("SHOP_QUEUE", "hb-default"),
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=1,
)


@app.task(name="shop.nap")
def nap(seconds: float) -> str:
    time.sleep(seconds)
    return "rested"


@app.task(name="shop.boom")
def boom() -> None:
    raise ValueError("boom")


@app.task(name="shop.ok")
def ok() -> str:
    return "ok"

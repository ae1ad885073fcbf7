"""A shop's Celery app for the catalog tests: no Django, tasks the dashboard's own app does not
have, routed in the ways the catalog resolves. ``SHOP_BROKER_URL`` comes from the test."""

from __future__ import annotations

import os

from celery import Celery

import tasktrail

app = Celery("catalog-shop")
tasktrail.install(app)
app.conf.update(
    broker_url=os.environ.get("SHOP_BROKER_URL", ""),
    task_default_queue="shop-default",
    task_routes={"shop.billing.*": {"queue": "billing"}},
    broker_connection_retry_on_startup=True,
)


@app.task(name="shop.billing.charge", tasktrail_retryable=False, max_retries=5, time_limit=30)
def charge(order_id: int) -> None: ...


@app.task(name="shop.mail.send", queue="mail", soft_time_limit=10)
def send(order_id: int) -> None: ...


@app.task(name="shop.sync", max_retries=None)
def sync() -> None: ...

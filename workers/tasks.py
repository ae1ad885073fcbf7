"""Demo tasks shaped like a shop's jobs. Each carries a business id; some fail, some retry, one can
hang and one runs on a second queue (``inventory``, see ``CELERY_TASK_ROUTES``)."""

from __future__ import annotations

import random
import time
from typing import Any

from celery import Task, shared_task


class PaymentDeclined(Exception):
    pass


class CarrierTimeout(Exception):
    pass


@shared_task(tasktrail_input_id="order_id")
def send_invoice(order_id: int, email: str = "customer@example.com") -> str:
    """Fails for orders whose id ends in 7 (a template bug, say)."""
    time.sleep(random.uniform(0.01, 0.05))
    if order_id % 10 == 7:
        raise ValueError(f"invoice template missing VAT number for order {order_id}")
    return f"invoice for order {order_id} sent to {email}"


@shared_task(tasktrail_input_id="sku")
def sync_inventory(sku: str, warehouse: str = "north") -> dict[str, Any]:
    time.sleep(random.uniform(0.01, 0.1))
    return {"sku": sku, "warehouse": warehouse, "on_hand": random.randint(0, 500)}


@shared_task(
    bind=True,
    autoretry_for=(CarrierTimeout,),
    retry_backoff=1,
    retry_backoff_max=8,
    retry_jitter=False,
    max_retries=3,
    tasktrail_input_id="shipment_id",
)
def book_shipment(self: Task, shipment_id: str, fail_times: int = 1) -> str:
    """Times out ``fail_times`` times (retried with backoff by Celery), then succeeds."""
    if self.request.retries < fail_times:
        raise CarrierTimeout(f"carrier API timed out for shipment {shipment_id}")
    return f"shipment {shipment_id} booked"


# Charging twice is worse than not charging: operators may not re-run it from the dashboard.
@shared_task(bind=True, max_retries=2, tasktrail_input_id="payment_id", tasktrail_retryable=False)
def charge_card(self: Task, payment_id: str, amount_cents: int, card_token: str = "") -> str:
    """Declined payments retry twice with a countdown (Celery's own retry), then fail for good."""
    if payment_id.endswith("X"):
        try:
            raise PaymentDeclined(f"card declined for payment {payment_id}")
        except PaymentDeclined as exc:
            raise self.retry(exc=exc, countdown=1) from exc
    return f"charged {amount_cents} for {payment_id}"


@shared_task(tasktrail_input_id="report_id")
def build_report(report_id: str, seconds: float = 600.0) -> str:
    """Hangs for ``seconds`` (a stuck export)."""
    time.sleep(seconds)
    return f"report {report_id} built"


@shared_task(tasktrail_input_id="report_id")
def export_report(report_id: str) -> str:
    """The demo publishes it to the queue ``reports``, which no demo worker consumes."""
    return f"report {report_id} exported"


@shared_task
def notify_customer(customer_id: int, message: str) -> str:
    """Declares no input id: the default (the first ``*_id`` parameter) applies."""
    return f"notified {customer_id}: {message[:20]}"

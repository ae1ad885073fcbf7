"""The shop's tasks. Each leaves a marker file when it runs, so the test can tell which ran."""

from pathlib import Path

from celery import shared_task
from django.conf import settings

from tracing import order_span


class StockUnavailable(Exception):
    pass


def _mark(name: str, text: str) -> Path:
    marker = Path(settings.SHOP_MARKER_DIR) / name
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(text)
    return marker


@shared_task
def charge_order(order_id: str, amount_cents: int) -> str:
    _mark(f"charged-{order_id}", order_span("charge", order_id))
    return f"charged {amount_cents} for {order_id}"


@shared_task
def send_receipt(order_id: str, email: str) -> str:
    _mark(f"receipt-{order_id}", order_span("receipt", order_id))
    return f"receipt for {order_id} sent to {email}"


@shared_task
def reserve_stock(order_id: str, sku: str) -> str:
    """Fails the first time for an order (the warehouse is down), succeeds when run again."""
    first = Path(settings.SHOP_MARKER_DIR) / f"stock-failed-{order_id}"
    if not first.exists():
        _mark(first.name, order_span("stock", order_id))
        raise StockUnavailable(f"warehouse offline, {sku} not reserved for {order_id}")
    _mark(f"stock-reserved-{order_id}", order_span("stock", order_id))
    return f"{sku} reserved for {order_id}"


@shared_task
def ship_order(order_id: str) -> str:
    _mark(f"shipped-{order_id}", order_span("ship", order_id))
    return f"{order_id} shipped"

"""The shop's own ``tracing`` module (named like the tasktrail service's package): a span name
its tasks write into their marker files, so the test sees this module was the one imported."""

SHOP_TRACING = "shop"


def order_span(step: str, order_id: str) -> str:
    return f"{SHOP_TRACING}.{step}/{order_id}"

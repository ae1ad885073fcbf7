"""``manage.py place_order ORDER_ID [--ship] [--fail-stock]``: publishes an order's tasks the way
the shop's web code does, and prints ``{"task": "task id", ...}`` as JSON."""

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from workers import tasks


class Command(BaseCommand):
    help = "Publish the tasks of one order."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("order_id")
        parser.add_argument(
            "--only", choices=["charge", "receipt", "stock", "ship"], action="append"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        order_id = options["order_id"]
        wanted = options["only"] or ["charge", "receipt", "stock"]
        published = {}
        if "charge" in wanted:
            published["charge"] = tasks.charge_order.delay(order_id, 4200).id
        if "receipt" in wanted:
            published["receipt"] = tasks.send_receipt.delay(order_id, email="ann@example.com").id
        if "stock" in wanted:
            published["stock"] = tasks.reserve_stock.apply_async((order_id,), {"sku": "MUG-1"}).id
        if "ship" in wanted:
            published["ship"] = tasks.ship_order.delay(order_id).id
        self.stdout.write(json.dumps(published))

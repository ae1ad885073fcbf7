"""``manage.py create_api_token USERNAME --name NAME [--expires-days N]``: print a new API token
(shown once). The same as ``manage.py apitoken create``; ``apitoken list`` and ``apitoken revoke``
manage the tokens afterwards."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from dashboard.management.commands.apitoken import add_expiry_argument, create_token


class Command(BaseCommand):
    help = "Create a bearer token for the read-only JSON API."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="api", help="What the token is for.")
        add_expiry_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        key = create_token(options["username"], options["name"], options["expires_days"])
        self.stdout.write(key)

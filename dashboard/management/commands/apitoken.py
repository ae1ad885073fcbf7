"""``manage.py apitoken list|create|revoke``: the read-only JSON API's bearer tokens.

``list [--user NAME]``: every token with its owner, dates and state (never the token itself).
``create USERNAME [--name NAME] [--expires-days N]``: prints a new token, shown once.
``revoke ID [ID ...]`` or ``revoke --user NAME``: refused from now on.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from dashboard.models import ApiToken
from dashboard.selectors.api_tokens import api_tokens, token_state
from dashboard.services import api_token_create, api_tokens_revoke


def add_expiry_argument(parser: CommandParser) -> None:
    parser.add_argument(
        "--expires-days",
        type=int,
        default=None,
        help=f"Refused after this many days (1 to {ApiToken.MAX_DAYS}; default "
        "TASKTRAIL_API_TOKEN_DAYS, 90).",
    )


def create_token(username: str, name: str, expires_days: int | None) -> str:
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise CommandError(f"No user named {username!r}.")
    try:
        return api_token_create(user=user, name=name, expires_days=expires_days)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "—"


class Command(BaseCommand):
    help = "List, create or revoke bearer tokens for the read-only JSON API."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        listing = actions.add_parser("list", help="Every token: owner, dates, state.")
        listing.add_argument("--user", help="Only this user's tokens.")
        create = actions.add_parser("create", help="Print a new token (shown once).")
        create.add_argument("username")
        create.add_argument("--name", default="api", help="What the token is for.")
        add_expiry_argument(create)
        revoke = actions.add_parser("revoke", help="Refuse tokens from now on.")
        revoke.add_argument("ids", nargs="*", type=int, help="Token ids, as `list` shows them.")
        revoke.add_argument("--user", help="Every token of this user.")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "create":
            key = create_token(options["username"], options["name"], options["expires_days"])
            self.stdout.write(key)
        elif action == "list":
            self._list(options.get("user"))
        else:
            self._revoke(options["ids"], options.get("user"))

    def _list(self, username: str | None) -> None:
        tokens = list(api_tokens(username=username))
        if not tokens:
            self.stdout.write("No API tokens.")
            return
        self.stdout.write("id\tstate\tuser\tname\tcreated\tlast used\texpires")
        for t in tokens:
            self.stdout.write(
                f"{t.pk}\t{token_state(t)}\t{t.user.get_username()}\t{t.name}\t"
                f"{_when(t.created_at)}\t{_when(t.last_used_at)}\t{_when(t.expires_at)}"
            )

    def _revoke(self, ids: list[int], username: str | None) -> None:
        if bool(ids) == bool(username):
            raise CommandError("Give token ids, or --user NAME (not both).")
        if ids:
            missing = set(ids) - set(
                ApiToken.objects.filter(pk__in=ids).values_list("pk", flat=True)
            )
            if missing:
                raise CommandError(f"No API token with id {', '.join(map(str, sorted(missing)))}.")
        count = api_tokens_revoke(token_ids=ids, username=username)
        self.stdout.write(f"Revoked {count} token{'' if count == 1 else 's'}.")

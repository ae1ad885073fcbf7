"""Task list filters, parsed from a query string with a clear message for every bad value.

The same filter serves the Tasks page, its partials and ``GET /api/tasks``, and it round-trips to a
query string so a filtered list is a link that can be pasted into a ticket.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlencode

from django.http import QueryDict
from django.utils import timezone

from dashboard.models import TaskState

MAX_VALUE_LENGTH: Final = 255
WINDOWS: Final[dict[str, dt.timedelta]] = {
    "15m": dt.timedelta(minutes=15),
    "1h": dt.timedelta(hours=1),
    "6h": dt.timedelta(hours=6),
    "24h": dt.timedelta(hours=24),
    "7d": dt.timedelta(days=7),
    "30d": dt.timedelta(days=30),
}
_TRACE_ID: Final = re.compile(r"^[0-9a-fA-F]{32}$")
# What people paste around an id ("order 19817", "Task #19817:"): words that name the kind of id,
# and punctuation at either end of a word. The search looks for what is left.
FILLER_WORDS: Final = frozenset(
    {"order", "orders", "task", "tasks", "id", "ids", "input", "trace", "no", "nr", "number", "for"}
)
_EDGE_PUNCTUATION: Final = "\"'`“”\u2018\u2019«»()[]{},;:."
MAX_SEARCH_TERMS: Final = 6  # each term is a few index seeks
TASK_ID_PREFIX_MIN: Final = 8  # as Celery's logs shorten task ids; shorter would match too much


class FilterError(ValueError):
    """A query parameter that cannot be used, with a message meant for the person who sent it."""


@dataclass(frozen=True)
class TaskFilter:
    states: tuple[str, ...] = ()
    name: str = ""
    queue: str = ""
    worker: str = ""
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    window: str = ""
    q: str = ""

    @property
    def is_empty(self) -> bool:
        return not (self.states or self.name or self.queue or self.worker or self.since
                    or self.until or self.q)  # fmt: skip

    @property
    def search_terms(self) -> tuple[str, ...]:
        return search_terms(self.q)

    def as_query(self) -> list[tuple[str, str]]:
        params: list[tuple[str, str]] = [("state", s) for s in self.states]
        for key in ("name", "queue", "worker", "q"):
            if value := getattr(self, key):
                params.append((key, value))
        if self.window:
            params.append(("window", self.window))
        else:
            if self.since:
                params.append(("since", self.since.isoformat()))
            if self.until:
                params.append(("until", self.until.isoformat()))
        return params

    def querystring(self, **extra: str) -> str:
        return urlencode(self.as_query() + [(k, v) for k, v in extra.items() if v])

    def describe(self) -> str:
        """The filter in words, for confirmations and empty states."""
        parts = []
        if self.states:
            parts.append("state " + " or ".join(self.states))
        if self.name:
            parts.append(f"a name containing “{self.name}”")
        for key in ("queue", "worker"):
            if value := getattr(self, key):
                parts.append(f"{key} {value}")
        if self.q:
            parts.append(f"the search “{self.q}”")
        if self.window:
            parts.append(f"in the last {self.window}")
        if self.since:
            parts.append(f"since {self.since:%Y-%m-%d %H:%M} UTC")
        if self.until:
            parts.append(f"until {self.until:%Y-%m-%d %H:%M} UTC")
        return ", ".join(parts) or "all tasks"


def text_param(params: QueryDict, key: str, *, limit: int = MAX_VALUE_LENGTH) -> str:
    """A text parameter, stripped; refused when longer than ``limit`` or holding a NUL (which
    PostgreSQL cannot compare with)."""
    value = (params.get(key) or "").strip()
    if len(value) > limit:
        raise FilterError(f"“{key}” is longer than {limit} characters.")
    if "\x00" in value:
        raise FilterError(f"“{key}” contains a NUL character.")
    return value


def is_trace_id(value: str) -> bool:
    return bool(_TRACE_ID.fullmatch(value))


def search_terms(q: str) -> tuple[str, ...]:
    """What to look for in a pasted search: the whole text as typed, then each word without the
    words that only name the kind of id and without a leading ``#`` or surrounding punctuation
    ("Order #19817:" -> "Order #19817:", "19817"). Duplicates once; at most MAX_SEARCH_TERMS."""
    whole = q.strip()
    if not whole:
        return ()
    words = (
        word.strip(_EDGE_PUNCTUATION).lstrip("#").strip(_EDGE_PUNCTUATION) for word in whole.split()
    )
    kept = [word for word in words if word and word.casefold() not in FILLER_WORDS]
    return tuple(dict.fromkeys([whole, *kept]))[:MAX_SEARCH_TERMS]


def is_task_id(value: str) -> bool:
    """Whether ``value`` can be a recorded task id (the monitor keeps 1-255 characters, no NUL)."""
    return 0 < len(value) <= MAX_VALUE_LENGTH and "\x00" not in value


def parse_number(value: str | None, *, maximum: int = 2**63 - 1) -> int | None:
    """A whole number written in ASCII digits, at most ``maximum`` (what a database integer
    holds); None for anything else ("", "-1", "1.5", "²", 40 nines)."""
    if not value or not value.isascii() or not value.isdigit() or len(value) > 19:
        return None
    number = int(value)
    return number if number <= maximum else None


def parse_datetime(value: str, key: str) -> dt.datetime:
    """An ISO 8601 date or date-time; naive values are UTC."""
    try:
        parsed = dt.datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        else:
            parsed = parsed.astimezone(dt.UTC)  # 0001-01-01T00:00+01:00 has no UTC time
    except (ValueError, OverflowError):
        raise FilterError(
            f"“{key}” must be a date or date-time like 2026-11-23 or 2026-11-23T14:05, "
            f"not “{value[:40]}”."
        ) from None
    return parsed


def parse_task_filter(params: QueryDict, *, now: dt.datetime | None = None) -> TaskFilter:
    states = []
    for raw in params.getlist("state"):
        for value in raw.split(","):
            value = value.strip().upper()
            if not value:
                continue
            if value not in TaskState.values:
                raise FilterError(
                    f"Unknown state “{value[:40]}”. Use one of: {', '.join(TaskState.values)}."
                )
            if value not in states:
                states.append(value)
    window = text_param(params, "window")
    since_text, until_text = text_param(params, "since"), text_param(params, "until")
    since = until = None
    if window:
        if window not in WINDOWS:
            raise FilterError(f"Unknown window “{window[:20]}”. Use one of: {', '.join(WINDOWS)}.")
        since = (now or timezone.now()) - WINDOWS[window]
    else:
        since = parse_datetime(since_text, "since") if since_text else None
        until = parse_datetime(until_text, "until") if until_text else None
        if since and until and since > until:
            raise FilterError("“since” is after “until”.")
    return TaskFilter(
        states=tuple(states),
        name=text_param(params, "name"),
        queue=text_param(params, "queue"),
        worker=text_param(params, "worker"),
        since=since,
        until=until,
        window=window,
        q=text_param(params, "q"),
    )

"""Refused actions, counted per person: the audit log records each refusal until ``LIMIT`` in a
minute, then one row for the rest of that minute, its message counting them.

Someone without the role who sends the same refused request in a loop would otherwise add a row
(and a target row per task) for every request. The count lives in the event stream's Redis, where
every web process sees it; when Redis cannot be reached every refusal is recorded, as before.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Final

from django.conf import settings
from django.contrib.auth.models import User

from dashboard.redis_client import shared_client

logger = logging.getLogger("tasktrail.actions")

LIMIT: Final = 10  # refusals a minute recorded one by one, per person
WINDOW: Final = 60  # seconds


@dataclass(frozen=True)
class Count:
    number: int  # this refusal's number in the current minute, 1 for the first
    window: int  # the minute it falls in (Unix time // WINDOW)

    @property
    def recorded(self) -> bool:
        """This refusal gets its own audit row."""
        return self.number <= LIMIT

    @property
    def over(self) -> int:
        """Refusals past the limit this minute, this one included."""
        return max(0, self.number - LIMIT)


def _key(user: User, window: int, suffix: str = "") -> str:
    return f"{settings.TASKTRAIL_STREAM}:refusals:{user.pk}:{window}{suffix}"


def count(user: User, now: float | None = None) -> Count | None:
    """Count one refusal of ``user``; None when Redis cannot be reached (record it, then)."""
    window = int((time.time() if now is None else now) // WINDOW)
    key = _key(user, window)
    try:
        pipe = shared_client().pipeline()
        pipe.incr(key)
        pipe.expire(key, 2 * WINDOW)
        number = int(pipe.execute()[0])
    except Exception as exc:
        logger.warning("refusals of %s not counted (%s): each is recorded", user.pk, exc)
        return None
    return Count(number, window)


def summary_row(user: User, window: int) -> int | None:
    """The id of the audit row that counts this minute's unrecorded refusals, once written."""
    try:
        value = shared_client().get(_key(user, window, ":row"))
    except Exception:
        return None
    return int(value) if value else None


def remember_summary_row(user: User, window: int, row_id: int) -> None:
    try:
        shared_client().set(_key(user, window, ":row"), row_id, ex=2 * WINDOW)
    except Exception as exc:  # the next refusal writes no row: the count is in Redis still
        logger.warning("refusal summary of %s not remembered (%s)", user.pk, exc)

"""Cutoffs from the ``TASKTRAIL_*RETENTION*`` settings: what is old enough to go.

A setting of 0 keeps that kind of row forever (its cutoff is None). The settings are checked when
they load (``dashboard.settings``); ``parse_days`` is that check.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Final

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from dashboard import constants

# Kinds of task row, by state. Every TaskState is in exactly one of them.
FINISHED_STATES: Final = (constants.SUCCESS,)
FAILED_STATES: Final = (constants.FAILURE, constants.REVOKED, constants.REJECTED, constants.LOST)
UNFINISHED_STATES: Final = (
    constants.PENDING,
    constants.RECEIVED,
    constants.STARTED,
    constants.RETRY,
)

MAX_DAYS: Final = 36500.0  # a century: beyond it a cutoff date would not be representable


def parse_days(name: str, raw: str | None, default: float) -> float:
    """A number of days from the environment: > 0, or 0 for "keep forever"."""
    if raw is None or raw.strip() == "":
        return default
    try:
        days = float(raw)
    except ValueError:
        raise ImproperlyConfigured(
            f"{name} must be a number of days (0 keeps forever), got {raw!r}"
        ) from None
    if not math.isfinite(days) or days < 0 or days > MAX_DAYS:
        raise ImproperlyConfigured(
            f"{name} must be between 0 (keep forever) and {MAX_DAYS:g} days, got {raw!r}"
        )
    return days


def parse_seconds(name: str, raw: str | None, default: float) -> float:
    """A number of seconds from the environment: > 0, or 0 for "off"."""
    if raw is None or raw.strip() == "":
        return default
    try:
        seconds = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number of seconds, got {raw!r}") from None
    if not math.isfinite(seconds) or seconds < 0 or seconds > MAX_DAYS * 86400:
        raise ImproperlyConfigured(f"{name} must be a number of seconds >= 0, got {raw!r}")
    return seconds


@dataclass(frozen=True)
class RetentionPolicy:
    """Days each kind of row is kept; 0 keeps it forever."""

    finished_days: float = 14
    failed_days: float = 30
    unfinished_days: float = 30
    audit_days: float = 400

    @classmethod
    def from_settings(cls) -> RetentionPolicy:
        return cls(
            finished_days=float(settings.TASKTRAIL_RETENTION_DAYS),
            failed_days=float(settings.TASKTRAIL_RETENTION_FAILED_DAYS),
            unfinished_days=float(settings.TASKTRAIL_UNFINISHED_GIVE_UP_DAYS),
            audit_days=float(settings.TASKTRAIL_AUDIT_RETENTION_DAYS),
        )

    def cutoffs(self, now: dt.datetime) -> Cutoffs:
        def before(days: float) -> dt.datetime | None:
            return now - dt.timedelta(days=days) if days > 0 else None

        return Cutoffs(
            finished=before(self.finished_days),
            failed=before(self.failed_days),
            unfinished=before(self.unfinished_days),
            audit=before(self.audit_days),
        )


@dataclass(frozen=True)
class Cutoffs:
    """Rows older than these go; None: that kind is kept forever.

    finished: SUCCESS tasks by ``finished_at``. failed: FAILURE, REVOKED, REJECTED and LOST tasks
    by ``finished_at`` (by their latest event when they have no finish time: LOST ones).
    unfinished: tasks that never finished, by their latest event and ETA, whichever is later.
    audit: operator actions by ``at`` (their targets with them), resolved incidents by
    ``resolved_at``. Results (django-celery-results) go with their task; a result with no task row
    goes by ``date_done`` at the longer of the two task cutoffs.
    """

    finished: dt.datetime | None
    failed: dt.datetime | None
    unfinished: dt.datetime | None
    audit: dt.datetime | None

    @property
    def orphan_results(self) -> dt.datetime | None:
        if self.finished is None or self.failed is None:
            return None
        return min(self.finished, self.failed)

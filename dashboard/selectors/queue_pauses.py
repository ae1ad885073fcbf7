"""Paused queues as the pages show them, and what a purge would delete.

A pause is a row (``QueuePause``): one small query for the Queues page, however many queues. A
paused queue the monitor has not measured (no worker ever declared it, the monitor is off) still
shows, in a list of its own. What a purge would delete is the latest depth the monitor left in its
snapshot: the page never asks the broker.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass

from django.utils import timezone

from dashboard.models import QueuePause
from dashboard.selectors.alerts import alert_snapshot
from tasktrail.queue_pauses import MAX_QUEUES


@dataclass(frozen=True)
class PauseInfo:
    queue: str
    paused_at: dt.datetime
    paused_by: str
    reason: str
    action_id: int | None  # the audit row of the pause

    @property
    def name(self) -> str:  # a queue row's name, for the templates that show both
        return self.queue

    @property
    def paused_for(self) -> float:
        return max(0.0, (timezone.now() - self.paused_at).total_seconds())


def _info(row: QueuePause) -> PauseInfo:
    return PauseInfo(row.queue, row.paused_at, row.paused_by, row.reason, row.action_id)


def queue_pauses() -> dict[str, PauseInfo]:
    """Every paused queue, by name."""
    rows = QueuePause.objects.order_by("queue")[:MAX_QUEUES]
    return {row.queue: _info(row) for row in rows}


def queue_pause(queue: str) -> PauseInfo | None:
    row = QueuePause.objects.filter(queue=queue).first()
    return None if row is None else _info(row)


def not_measured(pauses: dict[str, PauseInfo], measured: Collection[str]) -> list[PauseInfo]:
    """Paused queues without a row among ``measured`` (the queues the page lists)."""
    return [pause for name, pause in pauses.items() if name not in measured]


@dataclass(frozen=True)
class PurgePreview:
    """The latest depth the monitor measured, and how long ago."""

    queue: str
    depth: int | None  # None: not measured (no recent check, or not among the queues it knows)
    measured_ago: float | None  # seconds
    stale: bool = False


def purge_preview(queue: str) -> PurgePreview:
    snapshot = alert_snapshot()
    check = snapshot.queues.get(queue) if snapshot is not None else None
    if snapshot is None or check is None:
        return PurgePreview(queue=queue, depth=None, measured_ago=None)
    return PurgePreview(queue, check.depth, snapshot.age, snapshot.stale)

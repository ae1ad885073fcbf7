"""Queues as the monitor measured them at its latest check, with throughput from the recorded rows.

A page request never asks the broker or the workers itself: the monitor's alert check already
reads every queue's depth and asks the workers who consumes what, and leaves its figures in one
Redis key (``alert_snapshot``). Reading that is one GET; the alternative was a SCAN of the
keyspace, a pipeline per queue and a broadcast waiting half a second for the workers' replies.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import redis
from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from dashboard.models import TaskRun
from dashboard.selectors.alerts import AlertSnapshot, alert_snapshot


@dataclass(frozen=True)
class QueueInfo:
    name: str
    depth: int | None  # None: the check could not read it
    oldest_age: float | None  # seconds, at the check
    consumers: int | None  # None: the workers did not answer the check
    finished_last_hour: int
    state: str | None  # ok / warning / stuck; None: unknown (the check is stale)
    state_words: str = ""


@dataclass(frozen=True)
class QueueOverview:
    measured: AlertSnapshot | None  # None: no check to show (monitor not running, or alerts off)
    queues: list[QueueInfo]

    @property
    def stale(self) -> bool:
        return self.measured is not None and self.measured.stale


def configured_queues() -> set[str]:
    names = {settings.CELERY_TASK_DEFAULT_QUEUE}
    for route in getattr(settings, "CELERY_TASK_ROUTES", {}).values():
        if isinstance(route, dict) and route.get("queue"):
            names.add(route["queue"])
    return names


def queue_overview(client: redis.Redis | None = None) -> QueueOverview:
    measured = alert_snapshot(client)
    if measured is None:
        return QueueOverview(measured=None, queues=[])
    names = sorted(measured.queues)
    since = timezone.now() - dt.timedelta(hours=1)
    finished = dict(
        TaskRun.objects.filter(finished_at__gte=since, queue__in=names)
        .values_list("queue")
        .annotate(n=Count("id"))
        .values_list("queue", "n")
    )
    # A stale check's figures are shown as what they were; its verdicts are not current.
    fresh = not measured.stale
    return QueueOverview(
        measured=measured,
        queues=[
            QueueInfo(
                name=name,
                depth=check.depth,
                oldest_age=check.oldest_age,
                consumers=check.consumers,
                finished_last_hour=finished.get(name, 0),
                state=check.state if fresh else None,
                state_words=check.words if fresh else "",
            )
            for name, check in ((n, measured.queues[n]) for n in names)
        ],
    )

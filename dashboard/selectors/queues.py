"""Queues as the broker sees them, with throughput from the recorded rows."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count
from django.utils import timezone

from dashboard.models import TaskRun
from dashboard.redis_client import shared_client
from dashboard.selectors.alerts import alert_snapshot
from workers.broker import QueueDepth, known_queues, queue_depths

logger = logging.getLogger("tasktrail.queues")
CONSUMERS_CACHE_SECONDS = 10


@dataclass(frozen=True)
class QueueInfo:
    name: str
    depth: int
    oldest_age: float | None
    consumers: int | None  # None: could not ask the workers
    finished_last_hour: int
    state: str | None = None  # ok / warning / stuck from the monitor's latest check; None: none
    state_words: str = ""


def configured_queues() -> set[str]:
    names = {settings.CELERY_TASK_DEFAULT_QUEUE}
    for route in getattr(settings, "CELERY_TASK_ROUTES", {}).values():
        if isinstance(route, dict) and route.get("queue"):
            names.add(route["queue"])
    return names


def consumers_per_queue() -> dict[str, int] | None:
    """Live consumers per queue from the workers' own answer (cached: it costs a broadcast)."""
    cached = cache.get("tasktrail:consumers")
    if cached is not None:
        return dict(cached)
    from workers.celery_app import app

    try:
        replies = app.control.inspect(timeout=0.5).active_queues() or {}
    except Exception as exc:  # broker down: the page still renders
        logger.warning("could not ask workers for their queues: %s", exc)
        return None
    counts: dict[str, int] = {}
    for queues in replies.values():
        for queue in queues or []:
            counts[queue["name"]] = counts.get(queue["name"], 0) + 1
    cache.set("tasktrail:consumers", counts, CONSUMERS_CACHE_SECONDS)
    return counts


def queue_overview() -> list[QueueInfo]:
    client = shared_client()
    names = known_queues(client, extra=configured_queues())
    depths: dict[str, QueueDepth] = {d.name: d for d in queue_depths(client, names)}
    consumers = consumers_per_queue()
    checked = alert_snapshot(client)
    states = checked.queues if checked is not None else {}
    since = timezone.now() - dt.timedelta(hours=1)
    finished = dict(
        TaskRun.objects.filter(finished_at__gte=since, queue__in=names)
        .values_list("queue")
        .annotate(n=Count("id"))
        .values_list("queue", "n")
    )
    return [
        QueueInfo(
            name=name,
            depth=depths[name].depth,
            oldest_age=depths[name].oldest_age(),
            consumers=None if consumers is None else consumers.get(name, 0),
            finished_last_hour=finished.get(name, 0),
            state=states[name].state if name in states else None,
            state_words=states[name].words if name in states else "",
        )
        for name in names
    ]

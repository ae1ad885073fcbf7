"""The figures /metrics exports. Queues, consumers and the stream's lag are what the monitor
measured at its latest check (one GET of its snapshot): a scrape never asks the broker or the
workers itself. The monitors' heartbeats are one HGETALL; task and incident counts come from the
database."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

import redis
from django.db.models import Count
from django.utils import timezone

from dashboard.models import TaskRun, TaskState
from dashboard.redis_client import shared_client
from dashboard.selectors.alerts import AlertSnapshot, alert_snapshot, open_incident_counts
from dashboard.selectors.system import Heartbeat, heartbeats

LIVE_STATES = (
    TaskState.PENDING,
    TaskState.RECEIVED,
    TaskState.STARTED,
    TaskState.RETRY,
    TaskState.LOST,
)
MONITOR_FRESH_SECONDS = 60.0


@dataclass
class MetricsFigures:
    redis_up: bool = False  # Redis answered this scrape's reads
    checked: AlertSnapshot | None = None  # the monitor's latest check, stale or not
    tasks_live: dict[str, int] = field(default_factory=dict)
    finished_last_hour: dict[str, int] = field(default_factory=dict)
    incidents_open: dict[str, int] = field(default_factory=dict)
    monitors: list[Heartbeat] = field(default_factory=list)  # those that beat in the last minute


def metrics_figures(client: redis.Redis | None = None) -> MetricsFigures:
    client = client or shared_client()
    figures = MetricsFigures()
    try:
        now = time.time()
        figures.monitors = [b for b in heartbeats(client) if now - b.at <= MONITOR_FRESH_SECONDS]
        figures.redis_up = True
    except redis.RedisError:
        pass
    else:
        figures.checked = alert_snapshot(client)
    # Live states are few rows (index on state); terminal ones are counted over the last hour only,
    # so a scrape stays cheap at millions of rows.
    figures.tasks_live = dict(
        TaskRun.objects.filter(state__in=LIVE_STATES)
        .values("state")
        .annotate(n=Count("id"))
        .values_list("state", "n")
    )
    figures.finished_last_hour = dict(
        TaskRun.objects.filter(finished_at__gte=timezone.now() - dt.timedelta(hours=1))
        .values("state")
        .annotate(n=Count("id"))
        .values_list("state", "n")
    )
    figures.incidents_open = open_incident_counts()
    return figures

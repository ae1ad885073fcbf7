"""The figures /metrics exports: read fresh from Redis and the database at each scrape, except
consumers and queue states, which come from the monitor's latest check (asking the workers costs
a broadcast; a scrape should not)."""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field

import redis
from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from dashboard import redis_keys
from dashboard.alerts.checks import parse_stream_lag
from dashboard.models import TaskRun, TaskState
from dashboard.redis_client import shared_client
from dashboard.selectors.alerts import AlertSnapshot, alert_snapshot, open_incident_counts
from dashboard.selectors.queues import configured_queues
from workers.broker import QueueDepth, known_queues, queue_depths

LIVE_STATES = (
    TaskState.PENDING,
    TaskState.RECEIVED,
    TaskState.STARTED,
    TaskState.RETRY,
    TaskState.LOST,
)
MONITOR_FRESH_SECONDS = 60.0


@dataclass(frozen=True)
class MonitorBeat:
    consumer: str
    age: float  # seconds since its last heartbeat
    events: int  # written since it started
    rejected: int


@dataclass
class MetricsFigures:
    queues: list[QueueDepth] | None = None  # None: Redis unreachable
    checked: AlertSnapshot | None = None
    tasks_live: dict[str, int] = field(default_factory=dict)
    finished_last_hour: dict[str, int] = field(default_factory=dict)
    incidents_open: dict[str, int] = field(default_factory=dict)
    monitors: list[MonitorBeat] = field(default_factory=list)
    lag_entries: int | None = None
    lag_seconds: float | None = None


def metrics_figures(client: redis.Redis | None = None) -> MetricsFigures:
    client = client or shared_client()
    figures = MetricsFigures()
    now = time.time()
    try:
        names = known_queues(client, extra=configured_queues())
        figures.queues = queue_depths(client, names)
        figures.monitors = _monitor_beats(client, now)
        figures.lag_entries, figures.lag_seconds = _stream_lag(client, now)
        figures.checked = alert_snapshot(client)
    except redis.RedisError:
        figures.queues = None
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


def _monitor_beats(client: redis.Redis, now: float) -> list[MonitorBeat]:
    beats = []
    raw_beats: dict[bytes, bytes] = client.hgetall(redis_keys.monitors(settings.TASKTRAIL_STREAM))  # type: ignore[assignment]
    for name, raw in raw_beats.items():
        try:
            beat = json.loads(raw)
            age = now - float(beat["at"])
        except (ValueError, KeyError, TypeError):
            continue
        if age <= MONITOR_FRESH_SECONDS:
            beats.append(
                MonitorBeat(
                    consumer=name.decode(errors="replace"),
                    age=max(0.0, age),
                    events=int(beat.get("events") or 0),
                    rejected=int(beat.get("rejected") or 0),
                )
            )
    return sorted(beats, key=lambda b: b.consumer)


def _stream_lag(client: redis.Redis, now: float) -> tuple[int | None, float | None]:
    pipe = client.pipeline(transaction=False)
    pipe.xrange(settings.TASKTRAIL_STREAM, count=1)
    pipe.xinfo_groups(settings.TASKTRAIL_STREAM)
    first, groups = pipe.execute(raise_on_error=False)
    return parse_stream_lag(first, groups, now)

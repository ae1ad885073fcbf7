"""Worker and WorkerCounts rows as the monitor writes them from heartbeats, for the Workers page
tests (which need no running worker)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone

from dashboard.models import Worker, WorkerCounts


def make_worker(hostname: str, status: str = "online", **fields: Any) -> Worker:
    """A worker of app ``shop`` that started two hours ago and beat three seconds ago."""
    now = timezone.now()
    values: dict[str, Any] = {
        "app_name": "shop",
        "pid": 4121,
        "pool": "prefork",
        "concurrency": 4,
        "queues": ["default"],
        "running": [],
        "running_count": 0,
        "release": "2026.12.1",
        "celery_version": "5.5.3",
        "kombu_version": "5.5.4",
        "python_version": "3.12.3",
        "started_at": now - dt.timedelta(hours=2),
        "first_seen_at": now - dt.timedelta(hours=2),
        "last_heartbeat_at": now - dt.timedelta(seconds=3),
    }
    values.update(fields)
    return Worker.objects.create(hostname=hostname, status=status, **values)


def count_minute(
    hostname: str, minutes_ago: float, processed: int, failed: int = 0
) -> WorkerCounts:
    """The counts row of the minute ``minutes_ago`` minutes back (its start, as the monitor keys
    rows by the minute)."""
    at = timezone.now() - dt.timedelta(minutes=minutes_ago)
    return WorkerCounts.objects.create(
        hostname=hostname,
        minute=at.replace(second=0, microsecond=0),
        processed=processed,
        failed=failed,
    )

"""State of the moving parts, read from Redis: the monitors' heartbeats and the stream backlog."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import redis
from django.conf import settings

from dashboard import redis_keys
from dashboard.redis_client import shared_client

STALE_AFTER_SECONDS = 15.0
LAG_WARNING = 5_000


@dataclass(frozen=True)
class MonitorStatus:
    running: bool
    last_seen_seconds: float | None
    backlog: int  # stream entries no monitor has read yet
    problem: str | None  # a sentence for the banner, or None when all is well


def monitor_status(client: redis.Redis | None = None) -> MonitorStatus:
    client = client or shared_client()
    try:
        beats = client.hgetall(redis_keys.monitors(settings.TASKTRAIL_STREAM))
    except redis.RedisError as exc:
        return MonitorStatus(False, None, 0, f"Redis is unreachable ({exc}); nothing is recorded.")
    now = time.time()
    newest: dict[str, float] | None = None
    for raw in beats.values():
        try:
            beat = json.loads(raw)
        except ValueError:
            continue
        if newest is None or beat.get("at", 0) > newest.get("at", 0):
            newest = beat
    if newest is None:
        return MonitorStatus(False, None, 0, "No monitor has run yet: start `manage.py monitor`.")
    age = now - float(newest.get("at", 0))
    backlog = int(newest.get("lag", 0))
    if age > STALE_AFTER_SECONDS:
        return MonitorStatus(
            False, age, backlog, f"The monitor last reported {age:.0f}s ago: rows may be stale."
        )
    if backlog > LAG_WARNING:
        return MonitorStatus(
            True, age, backlog, f"The monitor is behind by {backlog} stream entries."
        )
    return MonitorStatus(True, age, backlog, None)

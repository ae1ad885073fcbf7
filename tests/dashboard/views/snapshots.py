"""The monitor's check snapshot and heartbeats as the monitor writes them, for the page tests."""

from __future__ import annotations

import json
import time
from typing import Any

import redis
from django.conf import settings

from dashboard import redis_keys


def write_snapshot(
    client: redis.Redis,
    queues: dict[str, dict[str, Any]],
    *,
    age: float = 0.0,
    every: float = 10.0,
    **extra: Any,
) -> float:
    """Write a snapshot taken ``age`` seconds ago (``CheckRunner.snapshot``'s shape); returns its
    time."""
    at = time.time() - age
    data = {"at": at, "every": every, "queues": queues, "workers": 1, "redis_seconds": 0.001}
    data.update(extra)
    client.set(redis_keys.alert_snapshot(settings.TASKTRAIL_STREAM), json.dumps(data))
    return at


def write_heartbeat(client: redis.Redis, consumer: str = "host-1", *, age: float = 0.0) -> None:
    beat = {"at": time.time() - age, "events": 1234, "rejected": 2, "lag": 0}
    client.hset(redis_keys.monitors(settings.TASKTRAIL_STREAM), consumer, json.dumps(beat))

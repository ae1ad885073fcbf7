"""State of the moving parts, from the monitors' heartbeats in Redis (one HGETALL)."""

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
class Heartbeat:
    consumer: str
    at: float  # Unix time of the beat
    events: int  # written since the monitor started
    rejected: int
    lag: int  # stream entries no monitor had read at the beat


def heartbeats(client: redis.Redis | None = None) -> list[Heartbeat]:
    """Every monitor's latest heartbeat, by consumer name. Raises ``redis.RedisError``."""
    client = client or shared_client()
    raw_beats: dict[bytes, bytes] = client.hgetall(redis_keys.monitors(settings.TASKTRAIL_STREAM))  # type: ignore[assignment]
    beats = []
    for name, raw in raw_beats.items():
        try:
            beat = json.loads(raw)
            beats.append(
                Heartbeat(
                    consumer=name.decode(errors="replace"),
                    at=float(beat["at"]),
                    events=int(beat.get("events") or 0),
                    rejected=int(beat.get("rejected") or 0),
                    lag=int(beat.get("lag") or 0),
                )
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return sorted(beats, key=lambda b: b.consumer)


@dataclass(frozen=True)
class MonitorStatus:
    running: bool
    last_seen_seconds: float | None
    backlog: int  # stream entries no monitor has read yet
    problem: str | None  # a sentence for the banner, or None when all is well


def monitor_status(client: redis.Redis | None = None) -> MonitorStatus:
    try:
        beats = heartbeats(client)
    except redis.RedisError as exc:
        return MonitorStatus(False, None, 0, f"Redis is unreachable ({exc}); nothing is recorded.")
    if not beats:
        return MonitorStatus(False, None, 0, "No monitor has run yet: start `manage.py monitor`.")
    newest = max(beats, key=lambda b: b.at)
    age = time.time() - newest.at
    if age > STALE_AFTER_SECONDS:
        return MonitorStatus(
            False, age, newest.lag, f"The monitor last reported {age:.0f}s ago: rows may be stale."
        )
    if newest.lag > LAG_WARNING:
        return MonitorStatus(
            True, age, newest.lag, f"The monitor is behind by {newest.lag} stream entries."
        )
    return MonitorStatus(True, age, newest.lag, None)

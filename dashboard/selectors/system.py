"""State of the moving parts, from the monitors' heartbeats in Redis and the count of stream entries
the task processes dropped past the stream's length cap (one pipelined round trip)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from typing import Any

import redis
from django.conf import settings

from dashboard import redis_keys
from dashboard.redis_client import shared_client

STALE_AFTER_SECONDS = 15.0
LAG_WARNING = 5_000
TRIMMED_SHOWN_SECONDS = 24 * 3600  # drops past the cap are shown for a day after the latest


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
    raw_beats: Any = client.hgetall(redis_keys.monitors(settings.TASKTRAIL_STREAM))
    return _beats(raw_beats)


def _beats(raw_beats: dict[bytes, bytes]) -> list[Heartbeat]:
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
    trimmed: int = 0  # stream entries dropped past the cap before a monitor wrote them, in all


@dataclass(frozen=True)
class Trimmed:
    entries: int = 0
    at: float | None = None  # the latest trim


def monitor_status(client: redis.Redis | None = None) -> MonitorStatus:
    client = client or shared_client()
    stream = settings.TASKTRAIL_STREAM
    try:
        pipe = client.pipeline(transaction=False)
        pipe.hgetall(redis_keys.monitors(stream))
        pipe.hgetall(redis_keys.stream_trimmed(stream))
        raw_beats, raw_trimmed = pipe.execute()
    except redis.RedisError as exc:
        return MonitorStatus(False, None, 0, f"Redis is unreachable ({exc}); nothing is recorded.")
    beats = _beats(raw_beats)
    trimmed = _trimmed(raw_trimmed)
    status = _status(beats)
    now = time.time()
    if trimmed.entries and trimmed.at is not None and now - trimmed.at <= TRIMMED_SHOWN_SECONDS:
        dropped = (
            f"{trimmed.entries:,} stream entries were dropped at the stream's length cap "
            f"(TASKTRAIL_STREAM_MAX_ENTRIES) before a monitor wrote them, the latest "
            f"{max(0.0, now - trimmed.at):.0f}s ago: the tasks in them miss those events."
        )
        problem = f"{status.problem} {dropped}" if status.problem else dropped
        return replace(status, problem=problem, trimmed=trimmed.entries)
    return replace(status, trimmed=trimmed.entries)


def _status(beats: list[Heartbeat]) -> MonitorStatus:
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


def _trimmed(raw: Any) -> Trimmed:
    """The writers' ``<stream>:trimmed`` hash; anything unreadable counts as nothing known."""
    if not isinstance(raw, dict):
        return Trimmed()
    try:
        entries = int(raw.get(b"entries") or 0)
        at = float(raw[b"at"]) if raw.get(b"at") else None
    except (TypeError, ValueError):
        return Trimmed()
    return Trimmed(max(0, entries), at)

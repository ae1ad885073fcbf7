"""The alert checks' reads and writes in Redis.

One pipelined round trip reads the timed-condition clocks, the workers' last answers and the
stream's backlog; a second one writes the clocks back with the snapshot the pages read. The queues
are read from the shop's broker, which may be another server (``dashboard.alerts.queue_figures``).

Timed conditions ("no consumer for 60 s") keep their start time in a Redis hash, so they survive a
monitor restart and several monitors agree on them. Every age is measured against the ``now`` the
check passes in.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis

from dashboard import redis_keys
from dashboard.ingest.stream import GROUP

OVERVIEW_TTL = 24 * 3600


@dataclass
class RedisTimer:
    """Wall time spent in Redis calls during one check (the bench reports it)."""

    seconds: float = 0.0
    round_trips: int = 0

    @contextmanager
    def measure(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - start
            self.round_trips += 1


@dataclass
class BrokerFigures:
    """The stream's Redis as the check read it (the name predates the shop's broker reader)."""

    since: dict[str, float]  # "condition:subject" -> start
    lag_seconds: float | None
    lag_entries: int | None
    stream_length: int | None = None  # entries no monitor has finished (acknowledged = deleted)
    trimmed: dict[str, float] = field(default_factory=dict)  # the writers' trim counter hash


def read_broker(client: redis.Redis, stream: str, now: float, timer: RedisTimer) -> BrokerFigures:
    """Everything read from the stream's Redis in one pipelined round trip."""
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(redis_keys.alert_since(stream))
    pipe.xrange(stream, count=1)  # acknowledged entries are deleted: this is the oldest unwritten
    pipe.xinfo_groups(stream)
    pipe.xlen(stream)
    pipe.hgetall(redis_keys.stream_trimmed(stream))
    with timer.measure():
        replies = pipe.execute(raise_on_error=False)
    since_raw, first, groups, length, trimmed = replies
    lag_entries, lag_seconds = parse_stream_lag(first, groups, now)
    return BrokerFigures(
        since=_float_hash(since_raw),
        lag_seconds=lag_seconds,
        lag_entries=lag_entries,
        stream_length=length if isinstance(length, int) else None,
        trimmed=_float_hash(trimmed),
    )


def parse_stream_lag(first: Any, groups: Any, now: float) -> tuple[int | None, float | None]:
    """From ``XRANGE stream - + COUNT 1`` and ``XINFO GROUPS stream`` replies: entries the
    monitors have not read, and the age of the oldest entry not yet written (acknowledged entries
    are deleted, so the first one left is the oldest unwritten). None: could not tell."""
    seconds = None
    if isinstance(first, list):
        seconds = 0.0
        if first:
            entry_id = first[0][0]
            text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            seconds = max(0.0, now - int(text.split("-")[0]) / 1000)
    entries = None
    if isinstance(groups, list):
        entries = 0
        for group in groups:
            name = group.get("name")
            if (name.decode() if isinstance(name, bytes) else name) == GROUP:
                entries = int(group.get("lag") or 0)
    elif first == []:
        entries = 0  # no stream yet: nothing behind
    return entries, seconds


def _float_hash(raw: Any) -> dict[str, float]:
    if not isinstance(raw, dict):
        return {}
    out = {}
    for key, value in raw.items():
        try:
            out[key.decode() if isinstance(key, bytes) else str(key)] = float(value)
        except (TypeError, ValueError):
            continue
    return out


# -- timed conditions ------------------------------------------------------------------------------


@dataclass
class ClockUpdate:
    """Writes for the condition clock hash, made in the second pipeline."""

    start: dict[str, float] = field(default_factory=dict)  # HSETNX
    clear: list[str] = field(default_factory=list)  # HDEL


def held_for(
    since: Mapping[str, float],
    conditions: Mapping[str, bool | None],
    now: float,
    update: ClockUpdate,
) -> dict[str, float]:
    """Seconds each condition (``"name:subject"``) has held; records starts and ends in
    ``update``. An unknown condition (None) keeps its clock but is not reported as holding."""
    held: dict[str, float] = {}
    for key, holds in conditions.items():
        if holds is None:
            continue
        if holds:
            start = since.get(key)
            if start is None:
                update.start[key] = now
                start = now
            held[key] = max(0.0, now - start)
        elif key in since:
            update.clear.append(key)
    return held


def write_state(
    client: redis.Redis,
    stream: str,
    update: ClockUpdate,
    snapshot: Mapping[str, Any],
    ttl: int,
    timer: RedisTimer,
    overview: Mapping[str, Any] | None = None,
) -> None:
    pipe = client.pipeline(transaction=False)
    since = redis_keys.alert_since(stream)
    for key, start in update.start.items():
        pipe.hsetnx(since, key, start)  # another monitor's earlier start wins
    if update.clear:
        pipe.hdel(since, *update.clear)
    pipe.set(redis_keys.alert_snapshot(stream), json.dumps(snapshot), ex=ttl)
    if overview is not None:
        # kept long after the monitor stops: the page shows them with their age, not nothing
        pipe.set(redis_keys.overview_figures(stream), json.dumps(overview), ex=OVERVIEW_TTL)
    with timer.measure():
        pipe.execute()

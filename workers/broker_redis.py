"""Queues on a Redis broker, laid out as kombu's Redis transport lays them out.

Each queue is a list (LPUSH to publish, BRPOP to consume, so the oldest message is at index -1)
plus one list per priority step: ``queue + sep + step`` for each non-zero step of
``priority_steps`` (default ``[0, 3, 6, 9]``, ``sep`` ``"\\x06\\x16"``). Queue declarations are
sets ``_kombu.binding.<exchange>`` with members ``routing_key + sep + pattern + sep + queue``.
With ``global_keyprefix`` every one of these keys starts with the prefix (kombu's prefixing
client adds it to LLEN, SMEMBERS, LPUSH...; this module adds it itself, on a plain client, so it
can also SCAN and LINDEX). ETA/countdown tasks and messages a worker has prefetched sit in the
``unacked`` hash instead and are not counted as waiting.

All queues' depths and oldest messages are read in one pipelined round trip.
"""

from __future__ import annotations

import contextlib
import json
import re
from bisect import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from tasktrail.config import masked, scrubbed
from workers.broker import (
    CONSUMERS,
    IDLE_SINCE,
    PRIORITY_SEP,
    PRIORITY_STEPS,
    UNACKED,
    BrokerReading,
    QueueReading,
    internal_queue,
)

PUBLISHED_HEADER = "tasktrail_published"
BINDING_PREFIX = "_kombu.binding."


@dataclass(frozen=True)
class RedisLayout:
    """Where kombu keeps a queue, from the shop's transport options."""

    prefix: str = ""  # global_keyprefix
    sep: str = PRIORITY_SEP
    steps: tuple[int, ...] = PRIORITY_STEPS

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None) -> RedisLayout:
        options = options or {}
        steps = options.get("priority_steps")
        return cls(
            prefix=str(options.get("global_keyprefix") or ""),
            sep=str(options.get("sep") or PRIORITY_SEP),
            steps=tuple(int(s) for s in steps) if steps else PRIORITY_STEPS,
        )

    def queue_keys(self, name: str) -> list[str]:
        """The keys kombu reads for ``name`` (``Channel._q_for_pri`` for each step)."""
        keys: list[str] = []
        for step in self.steps:
            # kombu maps a priority to a step with bisect, the same way for each step it lists
            pri = self.steps[bisect(self.steps, step) - 1]
            key = f"{self.prefix}{name}{self.sep}{pri}" if pri else f"{self.prefix}{name}"
            if key not in keys:
                keys.append(key)
        return keys

    def binding_match(self) -> str:
        """SCAN pattern for the binding sets (the prefix's glob characters escaped)."""
        return re.sub(r"([\\*?\[\]])", r"\\\1", self.prefix + BINDING_PREFIX) + "*"

    def celery_exchange(self, exchange_key: str) -> bool:
        """Celery's remote-control (``*.pidbox``) and event (``celeryev``) exchanges."""
        exchange = exchange_key[len(self.prefix) + len(BINDING_PREFIX) :]
        return exchange.endswith(".pidbox") or exchange.endswith("celeryev")

    def binding_queue(self, exchange_key: str, member: str) -> str | None:
        """The queue a binding member names, unless it is one of Celery's own."""
        if self.celery_exchange(exchange_key):
            return None
        parts = member.split(self.sep, 2)
        queue = parts[2] if len(parts) == 3 else ""
        return None if internal_queue(queue) else queue


DEFAULT_LAYOUT = RedisLayout()


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _published_at(raw: Any) -> float | None:
    if raw is None:
        return None
    try:
        message = json.loads(raw)
        value = message.get("headers", {}).get(PUBLISHED_HEADER)
    except (ValueError, AttributeError, TypeError):
        return None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def add_depth_commands(
    pipe: Any, names: Sequence[str], layout: RedisLayout = DEFAULT_LAYOUT
) -> int:
    """Queue the commands ``parse_depths`` reads onto ``pipe``; returns how many."""
    count = 0
    for name in names:
        for key in layout.queue_keys(name):
            pipe.llen(key)
            pipe.lindex(key, -1)
            count += 2
    return count


def parse_depths(
    names: Sequence[str], replies: Sequence[Any], layout: RedisLayout = DEFAULT_LAYOUT
) -> list[QueueReading]:
    out = []
    at = 0
    for name in names:
        per_queue = 2 * len(layout.queue_keys(name))
        chunk = replies[at : at + per_queue]
        at += per_queue
        if any(isinstance(reply, Exception) for reply in chunk):
            out.append(QueueReading(name))  # a key of another type: unknown, not zero
            continue
        depth = sum(int(n) for n in chunk[0::2])
        stamps = [p for p in (_published_at(raw) for raw in chunk[1::2]) if p is not None]
        out.append(QueueReading(name, depth=depth, oldest_published=min(stamps, default=None)))
    return out


def queue_depths(
    client: redis.Redis, names: Sequence[str], layout: RedisLayout = DEFAULT_LAYOUT
) -> list[QueueReading]:
    """Depth and oldest message of each queue, in one pipelined round trip."""
    pipe = client.pipeline(transaction=False)
    add_depth_commands(pipe, names, layout)
    return parse_depths(names, pipe.execute(raise_on_error=False), layout)


def known_queues(
    client: redis.Redis, extra: Iterable[str] = (), layout: RedisLayout = DEFAULT_LAYOUT
) -> list[str]:
    """Queues declared on the broker under the layout's prefix (kombu's binding sets)."""
    names = set(extra)
    keys = [_text(key) for key in client.scan_iter(match=layout.binding_match(), count=1000)]
    keys = [key for key in keys if not layout.celery_exchange(key)]
    if not keys:
        return sorted(names)
    pipe = client.pipeline(transaction=False)  # one round trip for all bindings
    for key in keys:
        pipe.smembers(key)
    for key, members in zip(keys, pipe.execute(raise_on_error=False), strict=True):
        if not isinstance(members, set | list):
            continue
        for member in members:
            queue = layout.binding_queue(key, _text(member))
            if queue:
                names.add(queue)
    return sorted(names)


class RedisReader:
    """The shop's Redis broker, through kombu's own connection settings (sentinel, TLS, socket
    timeouts, failover lists) and the shop's key layout. One client, kept between checks."""

    kind = "redis"
    unknown: tuple[str, ...] = (CONSUMERS, UNACKED, IDLE_SINCE)  # consumers: from the workers

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        self.url = url
        self.options = dict(options or {})
        self.where = masked(url)
        self.layout = RedisLayout.from_options(self.options)
        self._connection: Any = None
        self._client: redis.Redis | None = None

    def client(self) -> redis.Redis:
        if self._client is None:
            from kombu import Connection

            from workers.control import CONNECT_TIMEOUT, transport_options

            connection = Connection(
                self.url,
                transport_options=transport_options(self.url, self.options),
                connect_timeout=CONNECT_TIMEOUT,
            )
            try:
                channel: Any = connection.default_channel  # bounded: one reconnect, 2 s each
                # kombu's resolved layout is the one its workers use: take it from the channel
                self.layout = RedisLayout(
                    prefix=str(channel.global_keyprefix or ""),
                    sep=str(channel.sep),
                    steps=tuple(int(s) for s in channel.priority_steps),
                )
                # a plain client on kombu's pool: this module prefixes keys itself
                self._client = redis.Redis(connection_pool=channel.pool)
            except Exception:
                connection.release()
                raise
            self._connection = connection
        return self._client

    def _failed(self, exc: BaseException) -> str:
        self.close()
        return scrubbed(f"{type(exc).__name__}: {exc}", self.url)

    def list_queues(self) -> list[str] | None:
        try:
            return known_queues(self.client(), layout=self.layout)
        except Exception as exc:  # the broker is away: the caller keeps its last list
            self._failed(exc)
            return None

    def read(self, names: Sequence[str]) -> BrokerReading:
        try:
            depths = queue_depths(self.client(), names, self.layout)
        except Exception as exc:
            return BrokerReading(
                kind=self.kind,
                where=self.where,
                queues={name: QueueReading(name) for name in names},
                unknown=self.unknown,
                error=self._failed(exc),
            )
        return BrokerReading(
            kind=self.kind,
            where=self.where,
            queues={d.name: d for d in depths},
            unknown=self.unknown,
        )

    def close(self) -> None:
        connection, self._connection, self._client = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):  # a broken connection: nothing left to close
                connection.release()

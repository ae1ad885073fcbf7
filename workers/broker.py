"""What is waiting on a Redis broker: depth and age of the oldest message per queue.

kombu's Redis transport keeps each queue as a list (LPUSH to publish, BRPOP to consume, so the
oldest message is at index -1) plus one list per priority step, named ``queue + "\\x06\\x16" + n``.
ETA/countdown tasks and messages a worker has prefetched sit in the ``unacked`` hash instead and
are not counted as waiting. One pipelined round trip covers every queue. Imports no Django.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

PRIORITY_SEP = "\x06\x16"
PRIORITY_STEPS = (3, 6, 9)  # kombu's default priority_steps [0, 3, 6, 9]; 0 is the plain list
PUBLISHED_HEADER = "tasktrail_published"


@dataclass(frozen=True)
class QueueDepth:
    name: str
    depth: int
    oldest_published: float | None  # Unix time of the oldest waiting message, if stamped

    def oldest_age(self, now: float | None = None) -> float | None:
        if self.oldest_published is None:
            return None
        return max(0.0, (now or time.time()) - self.oldest_published)


def queue_keys(name: str) -> list[str]:
    return [name] + [f"{name}{PRIORITY_SEP}{step}" for step in PRIORITY_STEPS]


def _published_at(raw: Any) -> float | None:
    if raw is None:
        return None
    try:
        message = json.loads(raw)
        value = message.get("headers", {}).get(PUBLISHED_HEADER)
    except (ValueError, AttributeError, TypeError):
        return None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def queue_depths(client: redis.Redis, names: Sequence[str]) -> list[QueueDepth]:
    """Depth and oldest message of each queue, in one pipelined round trip."""
    pipe = client.pipeline(transaction=False)
    add_depth_commands(pipe, names)
    return parse_depths(names, pipe.execute())


def add_depth_commands(pipe: Any, names: Sequence[str]) -> None:
    """Queue the commands ``parse_depths`` reads onto ``pipe`` (so callers can add their own)."""
    for name in names:
        for key in queue_keys(name):
            pipe.llen(key)
            pipe.lindex(key, -1)


def depth_command_count(names: Sequence[str]) -> int:
    return len(names) * 2 * (1 + len(PRIORITY_STEPS))


def parse_depths(names: Sequence[str], replies: Sequence[Any]) -> list[QueueDepth]:
    out = []
    per_queue = 2 * (1 + len(PRIORITY_STEPS))
    for index, name in enumerate(names):
        chunk = replies[index * per_queue : (index + 1) * per_queue]
        depth = sum(int(n) for n in chunk[0::2])
        stamps = [p for p in (_published_at(raw) for raw in chunk[1::2]) if p is not None]
        out.append(QueueDepth(name=name, depth=depth, oldest_published=min(stamps, default=None)))
    return out


def known_queues(client: redis.Redis, extra: Iterable[str] = ()) -> list[str]:
    """Queues declared on the broker (kombu keeps its bindings in ``_kombu.binding.*`` sets)."""
    names = set(extra)
    keys = []
    for key in client.scan_iter(match="_kombu.binding.*", count=1000):
        exchange = key.decode() if isinstance(key, bytes) else key
        if exchange.startswith("_kombu.binding.celery.pidbox") or exchange.endswith(".celeryev"):
            continue
        keys.append(key)
    pipe = client.pipeline(transaction=False)  # one round trip for all bindings
    for key in keys:
        pipe.smembers(key)
    for members in pipe.execute() if keys else []:
        for member in members:
            text = member.decode() if isinstance(member, bytes) else member
            queue = text.split(PRIORITY_SEP)[-1]
            if queue and not queue.endswith(".pidbox") and not queue.startswith("celeryev"):
                names.add(queue)
    return sorted(names)

"""What the shop's broker can say about its queues: one reader per kind of broker.

The monitor's alert check asks the shop's broker (``TASKTRAIL_BROKER_URL`` with
``TASKTRAIL_BROKER_TRANSPORT_OPTIONS``), never the event stream's Redis, and leaves what it read in
the snapshot the Queues page shows. Each kind of broker knows different figures:

- Redis (``workers.broker_redis``): depth (the list and its priority sub-queues, under the shop's
  ``global_keyprefix``) and the publish stamp of the oldest message; the list of queues from
  kombu's bindings. Consumers come from the workers, not the broker.
- RabbitMQ (``workers.broker_amqp``): depth and consumers per queue (a passive declare); with the
  management API (``TASKTRAIL_RABBITMQ_API``) also unacknowledged messages, idle-since and the
  list of queues.
- Anything else (SQS, ...): nothing; every figure is unknown, so no alert fires on it.

A figure that is None is unknown, never zero. Readers never raise on a broker's answer: a broker
that cannot be reached gives a reading with ``error`` set (its text without passwords).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

from tasktrail.config import masked

# The figures a reading may carry; ``BrokerReading.unknown`` names those its broker cannot give.
DEPTH: Final = "depth"
CONSUMERS: Final = "consumers"
UNACKED: Final = "unacked"
IDLE_SINCE: Final = "idle_since"
OLDEST_PUBLISHED: Final = "oldest_published"
LIST: Final = "list"  # the broker can list its queues
FIGURES: Final = (DEPTH, CONSUMERS, UNACKED, IDLE_SINCE, OLDEST_PUBLISHED, LIST)

REDIS_SCHEMES: Final = frozenset(
    {"redis", "rediss", "valkey", "valkeys", "sentinel", "unix", "socket"}
)
AMQP_SCHEMES: Final = frozenset({"amqp", "amqps", "pyamqp", "librabbitmq"})
# kombu's Redis defaults for ``sep`` and ``priority_steps`` (``workers.broker_redis`` reads the
# shop's own from its transport options)
PRIORITY_SEP: Final = "\x06\x16"
PRIORITY_STEPS: Final = (0, 3, 6, 9)


@dataclass(frozen=True)
class QueueReading:
    """One queue as the broker described it (None: unknown)."""

    name: str
    depth: int | None = None  # messages ready to be delivered (not prefetched, not ETA-held)
    consumers: int | None = None
    unacked: int | None = None  # delivered to a consumer, not yet acknowledged
    idle_since: float | None = None  # Unix time of the queue's last activity
    oldest_published: float | None = None  # publish stamp of the oldest waiting message
    absent: bool = False  # the broker says there is no such queue

    def oldest_age(self, now: float | None = None) -> float | None:
        if self.oldest_published is None:
            return None
        return max(0.0, (time.time() if now is None else now) - self.oldest_published)


@dataclass(frozen=True)
class BrokerReading:
    kind: str  # redis / amqp / the URL's scheme
    where: str  # the broker's URL without passwords
    queues: Mapping[str, QueueReading] = field(default_factory=dict)
    unknown: tuple[str, ...] = ()  # figures this kind of broker cannot give
    error: str = ""  # why nothing could be read this time (no passwords)
    notes: tuple[str, ...] = ()  # what else went wrong, e.g. the management API did not answer

    def queue(self, name: str) -> QueueReading:
        return self.queues.get(name) or QueueReading(name)


class QueueReader(Protocol):
    @property
    def kind(self) -> str: ...

    @property
    def unknown(self) -> tuple[str, ...]:
        """Figures this kind of broker cannot give."""

    def list_queues(self) -> list[str] | None:
        """Queue names the broker knows; None when it cannot list them (or could not now)."""

    def read(self, names: Sequence[str]) -> BrokerReading: ...

    def close(self) -> None: ...


def broker_kind(url: str) -> str:
    """redis, amqp, or the scheme of the first URL of a failover list (``sqs``, ``memory``...)."""
    first = str(url).split(";")[0].strip()
    scheme = urlsplit(first).scheme.lower() if "://" in first else ""
    parts = set(scheme.split("+"))
    if parts & REDIS_SCHEMES:
        return "redis"
    if parts & AMQP_SCHEMES:
        return "amqp"
    return scheme or "unknown"


class UnknownReader:
    """A broker tasktrail cannot ask: every figure unknown, so no rule fires or resolves on it."""

    unknown: tuple[str, ...] = FIGURES

    def __init__(self, url: str) -> None:
        self.kind = broker_kind(url)
        self.where = masked(url)

    def list_queues(self) -> list[str] | None:
        return None

    def read(self, names: Sequence[str]) -> BrokerReading:
        return BrokerReading(
            kind=self.kind,
            where=self.where,
            queues={name: QueueReading(name) for name in names},
            unknown=self.unknown,
        )

    def close(self) -> None:
        return None


def reader_for(
    url: str, options: Mapping[str, Any] | None = None, rabbitmq_api: str = ""
) -> QueueReader:
    """The reader for the broker at ``url`` (nothing is connected until it reads)."""
    kind = broker_kind(url)
    if kind == "redis":
        from workers.broker_redis import RedisReader

        return RedisReader(url, options)
    if kind == "amqp":
        from workers.broker_amqp import AmqpReader

        return AmqpReader(url, options, api=rabbitmq_api)
    return UnknownReader(url)


def internal_queue(name: str) -> bool:
    """Celery's own queues: remote-control (``*.pidbox``) and event (``celeryev.*``) queues,
    RabbitMQ's server-named ones (``amq.gen-*``)."""
    return (
        not name
        or name.endswith(".pidbox")
        or name.startswith("celeryev.")
        or name.startswith("amq.gen-")
    )

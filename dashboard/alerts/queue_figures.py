"""The queues the alert check measures, on the shop's broker, and how long their oldest task waits.

Which queues: those the broker lists (Redis: kombu's bindings; RabbitMQ: its management API when
configured), ``TASKTRAIL_QUEUES``, and those tasktrail's own records name: the task catalog's
queues, the queues live workers consume (their heartbeats), and queues with tasks waiting in the
rows. The list is refreshed every ``QUEUE_LIST_SECONDS``; between refreshes one read per check
asks the broker for every queue at once (Redis: one pipelined round trip).

How long the oldest task waits, from the records: the oldest row published to the queue and not
yet received (PENDING), leaving out ETA/countdown tasks whose time has not come (a worker holds
those once received, and before that they are not late). One indexed query per queue on the
partial index ``taskrun_queue_waiting``, which holds only PENDING rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Q

from dashboard.alerts.redis_state import RedisTimer
from dashboard.models import RegisteredTask, TaskRun, TaskState, Worker
from workers.broker import (
    BrokerReading,
    QueueReader,
    QueueReading,
    internal_queue,
    reader_for,
)

QUEUE_LIST_SECONDS = 30.0  # how long the list of queues is reused
MAX_QUEUES = 500  # a runaway list (a queue per tenant, say) is cut here, with a log line
NAME_MAX = 255  # TaskRun.queue's length


def configured_queues() -> set[str]:
    """``TASKTRAIL_QUEUES``: shown even when nothing else names them."""
    return {str(name) for name in getattr(settings, "TASKTRAIL_QUEUES", []) if str(name)}


def recorded_queues(now: dt.datetime) -> set[str]:
    """Queues tasktrail's records name: the recent task catalog, live workers, waiting rows."""
    catalog_age = dt.timedelta(seconds=float(settings.TASKTRAIL_CATALOG_MAX_AGE_SECONDS))
    names: set[str] = {
        str(q)
        for q in RegisteredTask.objects.filter(
            last_reported_at__gte=now - catalog_age, queue__isnull=False
        )
        .values_list("queue", flat=True)
        .distinct()
    }
    for queues in Worker.objects.filter(status=Worker.Status.ONLINE).values_list(
        "queues", flat=True
    ):
        if isinstance(queues, list):
            names.update(q for q in queues if isinstance(q, str))
    # the partial index taskrun_queue_waiting holds only PENDING rows: as small as the backlog
    names.update(
        str(q)
        for q in TaskRun.objects.filter(state=TaskState.PENDING, queue__isnull=False)
        .order_by()
        .values_list("queue", flat=True)
        .distinct()[:MAX_QUEUES]
    )
    return {n for n in names if n and len(n) <= NAME_MAX and not internal_queue(n)}


def waiting_since(names: Iterable[str], now: dt.datetime) -> dict[str, float]:
    """Per queue: Unix time the oldest task waiting in it was published (queues with none are
    left out). ETA/countdown tasks due later are not waiting yet."""
    due = Q(eta__isnull=True) | Q(eta__lte=now)
    out: dict[str, float] = {}
    for name in names:
        published = (
            TaskRun.objects.filter(state=TaskState.PENDING, queue=name, published_at__isnull=False)
            .filter(due)
            .order_by("published_at")
            .values_list("published_at", flat=True)
            .first()
        )
        if published is not None:
            out[name] = published.timestamp()
    return out


@dataclass(frozen=True)
class QueueAges:
    """The oldest waiting task's age two ways, and the one the rules use."""

    broker: float | None  # from the oldest message's tasktrail_published header (Redis)
    records: float | None  # from the rows
    rules: float | None


def oldest_ages(reading: QueueReading, since: float | None, now: float) -> QueueAges:
    """The broker's stamp wins when there is one (it is the message itself); the records' age
    counts only while the broker does not say the queue is empty (a purged queue leaves its rows
    PENDING), and only as a figure when the depth is unknown (no rule fires without a depth)."""
    broker = reading.oldest_age(now)
    records = None
    if since is not None and (reading.depth is None or reading.depth > 0):
        records = max(0.0, now - since)
    rules = broker if broker is not None else records
    return QueueAges(broker=broker, records=records, rules=rules)


class BrokerQueues:
    """The shop's broker as the check sees it: its reader, and the list of queues to read."""

    def __init__(
        self, reader: QueueReader | None = None, every: float = QUEUE_LIST_SECONDS
    ) -> None:
        self.reader = reader or reader_for(
            settings.TASKTRAIL_BROKER_URL,
            settings.TASKTRAIL_BROKER_TRANSPORT_OPTIONS,
            getattr(settings, "TASKTRAIL_RABBITMQ_API", ""),
        )
        self.every = every
        self._listed: list[str] = []  # the broker's latest list (kept when it cannot answer)
        self._names: list[str] = []
        self._read_at: float | None = None

    def names(self, now: float, timer: RedisTimer) -> list[str]:
        # a clock that went back (a corrected wall clock) re-reads too
        if self._read_at is None or not 0 <= now - self._read_at < self.every:
            listed = self._timed(timer, self.reader.list_queues)
            if listed is not None:
                self._listed = listed
            names = set(self._listed) | configured_queues()
            names |= recorded_queues(dt.datetime.fromtimestamp(now, tz=dt.UTC))
            self._names = sorted(names)[:MAX_QUEUES]
            self._read_at = now
        return self._names

    def read(self, names: Sequence[str], timer: RedisTimer) -> BrokerReading:
        return self._timed(timer, lambda: self.reader.read(names))

    def _timed(self, timer: RedisTimer, call: Any) -> Any:
        if self.reader.kind != "redis":  # the timer counts Redis round trips only
            return call()
        with timer.measure():
            return call()

    def close(self) -> None:
        self.reader.close()


def broker_summary(reading: BrokerReading) -> dict[str, Any]:
    """What the Queues page says about the broker itself (kept in the snapshot)."""
    return {
        "kind": reading.kind,
        "where": reading.where,
        "unknown": list(reading.unknown),
        "error": reading.error,
        "notes": list(reading.notes),
    }

"""Queues as the monitor measured them at its latest check, with throughput from the recorded rows.

A page request never asks the broker or the workers itself: the monitor's alert check already
reads every queue on the shop's broker and asks the workers who consumes what, and leaves its
figures in one Redis key (``alert_snapshot``). Reading that is one GET; the alternative was a SCAN
of the keyspace, a pipeline per queue and a broadcast waiting half a second for the workers'
replies. What the shop's broker cannot tell (SQS: anything; Redis: unacknowledged, idle-since)
is said once for the page, in ``notes``, never shown as zero.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import redis
from django.db.models import Count
from django.utils import timezone

from dashboard.models import TaskRun
from dashboard.selectors.alerts import AlertSnapshot, BrokerCheck, alert_snapshot
from workers.broker import CONSUMERS, DEPTH, IDLE_SINCE, LIST, OLDEST_PUBLISHED, UNACKED


@dataclass(frozen=True)
class QueueInfo:
    name: str
    depth: int | None  # None: the check could not read it
    oldest_age: float | None  # seconds, at the check
    consumers: int | None  # None: the workers did not answer the check
    finished_last_hour: int
    state: str | None  # ok / warning / stuck; None: unknown (the check is stale)
    state_words: str = ""
    broker_oldest_age: float | None = None  # from the oldest message's publish stamp (Redis)
    records_oldest_age: float | None = None  # from the rows: oldest published, not received
    unacked: int | None = None
    idle_since: dt.datetime | None = None
    absent: bool = False  # the broker says there is no such queue


@dataclass(frozen=True)
class QueueOverview:
    measured: AlertSnapshot | None  # None: no check to show (monitor not running, or alerts off)
    queues: list[QueueInfo]
    notes: list[str] = field(default_factory=list)  # what the broker cannot tell, or why not
    shows_unacked: bool = False  # the broker gives messages unacknowledged (a column)
    shows_idle: bool = False

    @property
    def stale(self) -> bool:
        return self.measured is not None and self.measured.stale


# How the page names each figure a broker may not know.
FIGURE_WORDS = {
    DEPTH: "depth",
    CONSUMERS: "consumers",
    UNACKED: "messages unacknowledged",
    IDLE_SINCE: "idle since",
    OLDEST_PUBLISHED: "the oldest message's publish time",
    LIST: "the list of queues",
}
UNKNOWN_WHY = {
    CONSUMERS: "the consumers shown are the workers' answers",
    OLDEST_PUBLISHED: "the oldest waiting age comes from tasktrail's records",
    LIST: (
        "the queues shown are those the task catalog, the workers, the waiting tasks and "
        "TASKTRAIL_QUEUES name (TASKTRAIL_RABBITMQ_API lists the broker's own)"
    ),
}


def broker_notes(broker: BrokerCheck | None) -> list[str]:
    """What the page says about the broker: figures it cannot know, and why a check read nothing."""
    if broker is None:
        return []
    notes = []
    if broker.error:
        notes.append(f"The monitor could not read the broker at {broker.where}: {broker.error}")
    unknown = [FIGURE_WORDS[f] for f in broker.unknown if f in FIGURE_WORDS]
    if unknown:
        why = [UNKNOWN_WHY[f] for f in broker.unknown if f in UNKNOWN_WHY]
        if DEPTH in broker.unknown:
            why.append("no alert fires on a figure it cannot know")
        note = f"{', '.join(unknown).capitalize()} unknown on {broker.where}"
        notes.append(note + (f": {'; '.join(why)}." if why else "."))
    notes.extend(broker.notes)
    return notes


def _when(stamp: float | None) -> dt.datetime | None:
    if stamp is None:
        return None
    try:
        return dt.datetime.fromtimestamp(stamp, tz=dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None


def queue_overview(client: redis.Redis | None = None) -> QueueOverview:
    measured = alert_snapshot(client)
    if measured is None:
        return QueueOverview(measured=None, queues=[])
    names = sorted(measured.queues)
    since = timezone.now() - dt.timedelta(hours=1)
    finished = dict(
        TaskRun.objects.filter(finished_at__gte=since, queue__in=names)
        .values_list("queue")
        .annotate(n=Count("id"))
        .values_list("queue", "n")
    )
    # A stale check's figures are shown as what they were; its verdicts are not current.
    fresh = not measured.stale
    broker = measured.broker
    return QueueOverview(
        measured=measured,
        notes=broker_notes(broker),
        shows_unacked=broker is not None and UNACKED not in broker.unknown,
        shows_idle=broker is not None and IDLE_SINCE not in broker.unknown,
        queues=[
            QueueInfo(
                name=name,
                depth=check.depth,
                oldest_age=check.oldest_age,
                consumers=check.consumers,
                finished_last_hour=finished.get(name, 0),
                # a depth the broker cannot tell: no verdict, whatever the rules said
                state=check.state if fresh and check.depth is not None else None,
                state_words=check.words if fresh else "",
                broker_oldest_age=check.broker_oldest_age,
                records_oldest_age=check.records_oldest_age,
                unacked=check.unacked,
                idle_since=_when(check.idle_since),
                absent=check.absent,
            )
            for name, check in ((n, measured.queues[n]) for n in names)
        ],
    )

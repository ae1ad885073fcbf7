"""Incidents and the latest alert check, for the pages, the banner and /metrics."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from django.db.models import Count, Q

from dashboard import redis_keys
from dashboard.models import AlertIncident
from dashboard.redis_client import shared_client

BANNER_MAX = 20
HISTORY_PAGE = 50


def open_incidents(limit: int = BANNER_MAX) -> list[AlertIncident]:
    """Open incidents, oldest first: one query on the partial unique index."""
    return list(
        AlertIncident.objects.filter(resolved_at__isnull=True)
        .only("id", "rule", "subject", "summary", "opened_at")
        .order_by("opened_at", "id")[:limit]
    )


@dataclass(frozen=True)
class IncidentPage:
    open: list[AlertIncident]
    history: list[AlertIncident]  # resolved, newest first
    next_before: int | None  # id for the next (older) page


def incident_row(*, incident_id: int) -> AlertIncident | None:
    """One incident as its row shows it (who acknowledged it included)."""
    return AlertIncident.objects.select_related("acknowledged_by").filter(pk=incident_id).first()


def incident_page(*, before: int | None = None, rule: str = "") -> IncidentPage:
    rows_with_ack = AlertIncident.objects.select_related("acknowledged_by")
    resolved = rows_with_ack.filter(resolved_at__isnull=False)
    current = rows_with_ack.filter(resolved_at__isnull=True)
    if rule:
        resolved, current = resolved.filter(rule=rule), current.filter(rule=rule)
    if before is not None:
        anchor = AlertIncident.objects.filter(pk=before).values_list("opened_at", flat=True).first()
        if anchor is not None:
            resolved = resolved.filter(Q(opened_at__lt=anchor) | Q(opened_at=anchor, id__lt=before))
    rows = list(resolved.order_by("-opened_at", "-id")[: HISTORY_PAGE + 1])
    more = len(rows) > HISTORY_PAGE
    rows = rows[:HISTORY_PAGE]
    return IncidentPage(
        open=list(current.order_by("opened_at", "id")) if before is None else [],
        history=rows,
        next_before=rows[-1].pk if more else None,
    )


def open_incident_counts() -> dict[str, int]:
    return dict(
        AlertIncident.objects.filter(resolved_at__isnull=True)
        .values("rule")
        .annotate(n=Count("id"))
        .values_list("rule", "n")
    )


# A snapshot older than this many check intervals (plus a grace for a slow cycle) is stale: the
# monitor stopped, or its checks fail. The monitor lets the key expire a little later.
STALE_AFTER_CHECKS = 3
STALE_GRACE_SECONDS = 5.0
DEFAULT_CHECK_SECONDS = 10.0


@dataclass(frozen=True)
class QueueCheck:
    state: str  # ok / warning / stuck
    words: str
    depth: int | None
    oldest_age: float | None  # seconds, at the check
    consumers: int | None
    finished_per_minute: float | None
    # what the shop's broker and the records add (dashboard.alerts.queue_figures); None: unknown
    broker_oldest_age: float | None = None  # the oldest message's publish stamp (Redis)
    records_oldest_age: float | None = None  # the oldest PENDING row (ETA tasks not yet due: not)
    unacked: int | None = None
    idle_since: float | None = None  # Unix time
    absent: bool = False  # the broker says there is no such queue
    consumers_from: str = ""  # broker / workers


@dataclass(frozen=True)
class BrokerCheck:
    """What the shop's broker could tell at the check."""

    kind: str  # redis / amqp / the URL's scheme
    where: str  # its URL, without passwords
    unknown: tuple[str, ...]  # figures it cannot give (workers.broker's names)
    error: str  # why it could not be read this time
    notes: tuple[str, ...]


@dataclass(frozen=True)
class AlertSnapshot:
    """What the monitor measured at its latest check (``CheckRunner.snapshot``)."""

    at: float
    age: float  # seconds since the check
    every: float  # the monitor's check interval
    queues: dict[str, QueueCheck]
    workers: int | None
    redis_seconds: float | None
    lag_entries: int | None  # stream entries no monitor has read; None: unknown
    lag_seconds: float | None  # age of the oldest entry not yet written; None: unknown
    broker: BrokerCheck | None = None  # None: a snapshot from before the broker was described

    @property
    def stale(self) -> bool:
        return self.age > STALE_AFTER_CHECKS * self.every + STALE_GRACE_SECONDS


def _number(value: Any, kind: type[int] | type[float]) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return kind(value)


def alert_snapshot(client: redis.Redis | None = None) -> AlertSnapshot | None:
    """The monitor's latest check, stale or not (see ``stale``); None when there is none (alerts
    off, monitor never ran or gone long enough for the key to expire) or Redis cannot be read.
    One GET."""
    client = client or shared_client()
    try:
        raw = client.get(redis_keys.alert_snapshot(settings.TASKTRAIL_STREAM))
    except redis.RedisError:
        return None
    if not raw:
        return None
    try:
        data: dict[str, Any] = json.loads(raw)
        at = float(data["at"])
        queues = {
            str(name): QueueCheck(
                state=str(q.get("state")),
                words=str(q.get("words") or ""),
                depth=_number(q.get("depth"), int),
                oldest_age=_number(q.get("oldest_age"), float),
                consumers=_number(q.get("consumers"), int),
                finished_per_minute=_number(q.get("finished_per_minute"), float),
                broker_oldest_age=_number(q.get("broker_oldest_age"), float),
                records_oldest_age=_number(q.get("records_oldest_age"), float),
                unacked=_number(q.get("unacked"), int),
                idle_since=_number(q.get("idle_since"), float),
                absent=q.get("absent") is True,
                consumers_from=str(q.get("consumers_from") or "")[:20],
            )
            for name, q in dict(data.get("queues") or {}).items()
        }
        stream = dict(data.get("stream") or {})
        broker = _broker_check(data.get("broker"))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return AlertSnapshot(
        at=at,
        age=max(0.0, time.time() - at),
        every=_number(data.get("every"), float) or DEFAULT_CHECK_SECONDS,
        queues=queues,
        workers=_number(data.get("workers"), int),
        redis_seconds=_number(data.get("redis_seconds"), float),
        lag_entries=_number(stream.get("lag_entries"), int),
        lag_seconds=_number(stream.get("lag_seconds"), float),
        broker=broker,
    )


def _broker_check(raw: Any) -> BrokerCheck | None:
    if not isinstance(raw, dict) or not raw.get("kind"):
        return None

    def texts(value: Any) -> tuple[str, ...]:
        return tuple(str(v)[:500] for v in value) if isinstance(value, list) else ()

    return BrokerCheck(
        kind=str(raw["kind"])[:40],
        where=str(raw.get("where") or "")[:500],
        unknown=texts(raw.get("unknown")),
        error=str(raw.get("error") or "")[:1000],
        notes=texts(raw.get("notes")),
    )


def queue_states() -> dict[str, QueueCheck]:
    """Queue name -> its latest check (empty when there is no recent one)."""
    checked = alert_snapshot()
    return checked.queues if checked is not None and not checked.stale else {}

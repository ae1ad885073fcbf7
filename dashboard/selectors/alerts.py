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


def incident_page(*, before: int | None = None, rule: str = "") -> IncidentPage:
    resolved = AlertIncident.objects.filter(resolved_at__isnull=False)
    current = AlertIncident.objects.filter(resolved_at__isnull=True)
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


@dataclass(frozen=True)
class QueueCheck:
    state: str  # ok / warning / stuck
    words: str
    consumers: int | None
    finished_per_minute: float | None


@dataclass(frozen=True)
class AlertSnapshot:
    at: float
    age: float  # seconds since the check
    queues: dict[str, QueueCheck]
    workers: int | None
    redis_seconds: float | None


def alert_snapshot(client: redis.Redis | None = None) -> AlertSnapshot | None:
    """The monitor's latest check, or None when there is none recent (alerts off, monitor down)."""
    client = client or shared_client()
    try:
        raw = client.get(redis_keys.alert_snapshot(settings.TASKTRAIL_STREAM))
    except redis.RedisError:
        return None
    if not raw:
        return None
    try:
        data: dict[str, Any] = json.loads(raw)
        age = max(0.0, time.time() - float(data["at"]))
        if age > 3 * float(data.get("every") or 10) + 5:
            return None
        queues = {
            str(name): QueueCheck(
                state=str(q.get("state")),
                words=str(q.get("words") or ""),
                consumers=q.get("consumers"),
                finished_per_minute=q.get("finished_per_minute"),
            )
            for name, q in dict(data.get("queues") or {}).items()
        }
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return AlertSnapshot(
        at=float(data["at"]),
        age=age,
        queues=queues,
        workers=data.get("workers"),
        redis_seconds=data.get("redis_seconds"),
    )


def queue_states() -> dict[str, QueueCheck]:
    """Queue name -> its latest check (empty when there is no recent one)."""
    checked = alert_snapshot()
    return checked.queues if checked is not None else {}

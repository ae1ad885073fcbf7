"""Incidents: open once, remind, resolve; and which mail is due for which incident.

Every write is a compare-and-swap on the row, so two monitors checking at once (or one restarted
mid-way) never open a second incident nor send a notice twice:

- open: an INSERT guarded by the partial unique index on (rule, subject) where resolved_at IS NULL;
  the loser of a race finds the winner's row.
- resolve: ``UPDATE … WHERE resolved_at IS NULL``.
- send: a monitor first takes a lease, ``UPDATE … SET retry_at = now + lease WHERE <notice still
  due> AND (retry_at IS NULL OR retry_at <= now)``; only the one that updated the row sends. A
  failed send sets ``retry_at`` to a back-off and records the error on the row.

Acknowledged incidents (``dashboard.services_incidents``) send no reminder before
``silenced_until``; the opened and recovery mails are not silenced. The acknowledgement covers what
was firing then: a check that finds the incident worse (stuck again after a check that was not, or
stuck by a condition that had not fired when it was acknowledged) lifts the silence.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from django.db import IntegrityError, transaction
from django.db.models import F, Q, QuerySet

from dashboard.alerts.rules import Verdict
from dashboard.models import AlertIncident

logger = logging.getLogger("tasktrail.alerts")

NoticeKind = Literal["opened", "reminder", "resolved"]

SEND_LEASE = dt.timedelta(minutes=2)  # longer than a send can take (EMAIL_TIMEOUT, retries)
BACKOFF_FIRST = 15.0
BACKOFF_MAX = 600.0
MAX_SUMMARY = 500


@dataclass
class SyncResult:
    opened: list[AlertIncident] = field(default_factory=list)
    resolved: list[AlertIncident] = field(default_factory=list)
    still_open: list[AlertIncident] = field(default_factory=list)


# Keys of ``AlertIncident.details`` beside the figures: the latest check's state, and what was
# firing when the incident was acknowledged (written by the acknowledgement, kept by every refresh).
STATE_KEY = "state"
ACKNOWLEDGED_KEY = "acknowledged"
RESUMED_KEY = "reminders_resumed"


def _details(verdict: Verdict) -> dict[str, Any]:
    return {
        "cause": verdict.cause,
        "fired": list(verdict.fired),
        "figures": dict(verdict.figures),
        STATE_KEY: verdict.state,
    }


def sync_incidents(
    verdicts: Sequence[Verdict], complete_rules: Collection[str], now: dt.datetime
) -> SyncResult:
    """Open incidents for stuck verdicts, refresh the open ones, resolve those that cleared.

    An open incident resolves when its subject was checked and found ``ok`` with every figure
    known, or when its rule checked every subject (``complete_rules``) and this one was not
    among the stuck ones. A subject not checked this time (broker unreachable) stays as it is.
    """
    result = SyncResult()
    open_rows = {(i.rule, i.subject): i for i in open_incidents()}
    by_key = {(v.rule, v.subject): v for v in verdicts}
    for key, verdict in by_key.items():
        incident = open_rows.get(key)
        if incident is None:
            if verdict.firing:
                opened = open_incident(verdict, now)
                if opened is not None:
                    result.opened.append(opened)
            continue
        if verdict.state != "ok" or not verdict.known:
            refresh(incident, verdict, now)
            result.still_open.append(incident)
    for key, incident in open_rows.items():
        latest = by_key.get(key)
        if latest is not None:
            clear = latest.state == "ok" and latest.known
        else:
            clear = incident.rule in complete_rules
        if clear and resolve(incident, now, latest):
            result.resolved.append(incident)
    return result


def open_incidents() -> QuerySet[AlertIncident]:
    return AlertIncident.objects.filter(resolved_at__isnull=True)


def open_incident(verdict: Verdict, now: dt.datetime) -> AlertIncident | None:
    """Insert the incident; None when another monitor opened it first (it is left as it is)."""
    try:
        with transaction.atomic():
            return AlertIncident.objects.create(
                rule=verdict.rule,
                subject=verdict.subject[:255],
                summary=verdict.words[:MAX_SUMMARY],
                details=_details(verdict),
                opened_at=now,
                checked_at=now,
            )
    except IntegrityError:
        return None


def worse_than_acknowledged(incident: AlertIncident, verdict: Verdict) -> str | None:
    """Why ``verdict`` is worse than what was acknowledged (None: it is not, or not silenced)."""
    if incident.silenced_until is None or verdict.state != "stuck":
        return None
    details = incident.details or {}
    if details.get(STATE_KEY, "stuck") != "stuck":
        return "stuck again"
    acknowledged = set((details.get(ACKNOWLEDGED_KEY) or {}).get("fired") or [])
    new = [name for name in verdict.fired if name not in acknowledged]
    return f"new condition: {', '.join(new)}" if new else None


def refresh(incident: AlertIncident, verdict: Verdict, now: dt.datetime) -> None:
    """Latest figures on an open incident (the reminder mail shows them); lifts an
    acknowledgement's silence when the incident got worse."""
    worse = worse_than_acknowledged(incident, verdict)
    kept = {
        k: v for k, v in (incident.details or {}).items() if k in (ACKNOWLEDGED_KEY, RESUMED_KEY)
    }
    if verdict.state == "stuck":  # keep the figures that made it stuck while it is only warning
        incident.summary = verdict.words[:MAX_SUMMARY]
        incident.details = {**_details(verdict), **kept}
    else:
        incident.details = {**(incident.details or {}), STATE_KEY: verdict.state}
    incident.checked_at = now
    changes: dict[str, Any] = {}
    if worse is not None:
        incident.details[RESUMED_KEY] = worse
        incident.silenced_until = None
        changes["silenced_until"] = None
        logger.info("alert %s got worse (%s): reminders resume", incident.headline, worse)
    # Not over an acknowledgement made since this check read the row: its note of what was
    # firing would be lost. The next check refreshes it.
    AlertIncident.objects.filter(
        pk=incident.pk, resolved_at__isnull=True, acknowledged_at=incident.acknowledged_at
    ).update(summary=incident.summary, details=incident.details, checked_at=now, **changes)


def resolve(incident: AlertIncident, now: dt.datetime, verdict: Verdict | None) -> bool:
    details = dict(incident.details or {})
    if verdict is not None:
        details["at_recovery"] = dict(verdict.figures)
    done = AlertIncident.objects.filter(pk=incident.pk, resolved_at__isnull=True).update(
        resolved_at=now, checked_at=now, details=details
    )
    if done:
        incident.resolved_at, incident.details = now, details
    return bool(done)


# -- notices ---------------------------------------------------------------------------------------


def _due(kind: NoticeKind, now: dt.datetime, remind: dt.timedelta) -> Q:
    if kind == "opened":
        return Q(resolved_at__isnull=True, last_notified_at__isnull=True)
    if kind == "reminder":
        return Q(resolved_at__isnull=True, last_notified_at__lte=now - remind) & _not_silenced(now)
    return Q(resolved_at__isnull=False, recovery_notified_at__isnull=True)


def _not_silenced(now: dt.datetime) -> Q:
    return Q(silenced_until__isnull=True) | Q(silenced_until__lte=now)


def silenced(incident: AlertIncident, now: dt.datetime) -> bool:
    return incident.silenced_until is not None and incident.silenced_until > now


def _not_leased(now: dt.datetime) -> Q:
    return Q(retry_at__isnull=True) | Q(retry_at__lte=now)


def notice_due(
    incident: AlertIncident, now: dt.datetime, remind: dt.timedelta
) -> NoticeKind | None:
    if incident.resolved_at is not None:
        return "resolved" if incident.recovery_notified_at is None else None
    if incident.last_notified_at is None:
        return "opened"
    if silenced(incident, now):
        return None
    if remind.total_seconds() > 0 and incident.last_notified_at <= now - remind:
        return "reminder"
    return None


def due_notices(now: dt.datetime, remind: dt.timedelta) -> list[tuple[AlertIncident, NoticeKind]]:
    """Incidents with a mail due and not leased, oldest first (open ones, and resolved ones whose
    recovery mail has not gone out: a small set however long the history)."""
    candidates = AlertIncident.objects.filter(
        Q(resolved_at__isnull=True) | Q(recovery_notified_at__isnull=True)
    ).filter(_not_leased(now))
    out = []
    for incident in candidates.order_by("opened_at", "id"):
        kind = notice_due(incident, now, remind)
        if kind is not None:
            out.append((incident, kind))
    return out


def claim(
    incident: AlertIncident, kind: NoticeKind, now: dt.datetime, remind: dt.timedelta
) -> bool:
    """Take the lease to send ``kind``; False if another monitor has it or it is no longer due."""
    return (
        AlertIncident.objects.filter(
            _due(kind, now, remind), _not_leased(now), pk=incident.pk
        ).update(retry_at=now + SEND_LEASE)
        == 1
    )


def record_sent(
    incident: AlertIncident, kind: NoticeKind, now: dt.datetime, note: str = ""
) -> None:
    changes: dict[str, Any] = {"retry_at": None, "notify_attempts": 0, "last_error": note}
    if kind == "resolved":
        changes["recovery_notified_at"] = now
    else:
        changes["last_notified_at"] = now
        if kind == "reminder":
            changes["reminders_sent"] = F("reminders_sent") + 1
    AlertIncident.objects.filter(pk=incident.pk).update(**changes)


def backoff(attempts: int) -> dt.timedelta:
    return dt.timedelta(seconds=min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(0, attempts - 1)))


def record_failure(incident: AlertIncident, error: str, now: dt.datetime) -> None:
    attempts = incident.notify_attempts + 1
    AlertIncident.objects.filter(pk=incident.pk).update(
        notify_attempts=attempts, last_error=error[:2000], retry_at=now + backoff(attempts)
    )


@dataclass
class Delivery:
    sent: list[tuple[int, NoticeKind]] = field(default_factory=list)
    failed: list[tuple[int, NoticeKind, str]] = field(default_factory=list)


# send(incident, kind, now) -> number of recipients (0: nobody to send to); raises on failure
Sender = Callable[[AlertIncident, NoticeKind, dt.datetime], int]


def deliver_due(now: dt.datetime, remind: dt.timedelta, send: Sender) -> Delivery:
    delivery = Delivery()
    for incident, kind in due_notices(now, remind):
        if not claim(incident, kind, now, remind):
            continue
        incident.refresh_from_db()
        try:
            recipients = send(incident, kind, now)
        except Exception as exc:  # the mail server is down: detection goes on, the row says why
            error = f"{type(exc).__name__}: {exc}"
            logger.warning("alert mail for %s not sent (%s); will retry", incident.headline, error)
            record_failure(incident, error, now)
            delivery.failed.append((incident.pk, kind, error))
            continue
        note = "" if recipients else "nobody to mail: set TASKTRAIL_ALERT_EMAILS"
        if not recipients:
            logger.warning("alert %s: %s", incident.headline, note)
        record_sent(incident, kind, now, note)
        delivery.sent.append((incident.pk, kind))
    return delivery

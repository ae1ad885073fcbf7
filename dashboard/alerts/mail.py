"""Alert mail: who gets it, what it says (plain text and HTML), and sending it.

Sent with Django's email backend (``EMAIL_BACKEND``: SMTP in production, the console backend by
default). A send that raises is retried by ``dashboard.alerts.incidents`` with a back-off, and the
error is shown on the incident. Every value from a queue, task or worker is escaped in the HTML
part; the subject is kept to one printable line.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMultiAlternatives
from django.db.models import Q
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse

from dashboard.alerts import rules
from dashboard.alerts.incidents import NoticeKind
from dashboard.models import AlertIncident

SUBJECT_PREFIX = "[tasktrail]"
MAX_SUBJECT = 200
RECEIVE_ALERTS = "receive_alerts"


def recipients() -> list[str]:
    """``TASKTRAIL_ALERT_EMAILS`` plus active users with the "Receives alert emails" permission
    (given to them or to one of their groups), without duplicates."""
    found = [str(e) for e in settings.TASKTRAIL_ALERT_EMAILS]
    flagged = Q(user_permissions__codename=RECEIVE_ALERTS) | Q(
        groups__permissions__codename=RECEIVE_ALERTS
    )
    found += (
        get_user_model()
        .objects.filter(flagged, is_active=True)
        .exclude(email="")
        .values_list("email", flat=True)
        .distinct()
    )
    seen: set[str] = set()
    out = []
    for email in found:
        if email and email.lower() not in seen:
            seen.add(email.lower())
            out.append(email)
    return out


def one_line(text: str, limit: int = MAX_SUBJECT) -> str:
    """Printable characters only (a newline in a subject is a header injection), at most
    ``limit`` of them."""
    cleaned = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def subject_line(incident: AlertIncident, kind: NoticeKind, now: dt.datetime) -> str:
    head = incident.headline
    if kind == "opened":
        text = f"{head}: {incident.summary}"
    elif kind == "reminder":
        text = f"reminder: {head} for {_open_for(incident, now)}: {incident.summary}"
    else:
        text = f"recovered: {head}, after {_open_for(incident, now)}"
    return one_line(f"{SUBJECT_PREFIX} {text}")


def _open_for(incident: AlertIncident, now: dt.datetime) -> str:
    end = incident.resolved_at or now
    return rules.duration_words((end - incident.opened_at).total_seconds())


def _url(path: str, query: Mapping[str, str] | None = None) -> str:
    base = str(settings.TASKTRAIL_BASE_URL).rstrip("/")
    return base + path + ("?" + urlencode(query) if query else "")


def _seconds(value: Any) -> str:
    return rules.duration_words(value) if isinstance(value, int | float) else "unknown"


def _figures(rule: str, figures: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Label and value rows for the mail body."""
    rows: list[tuple[str, Any]]
    if rule == rules.QUEUE_STUCK:
        consumers = figures.get("consumers")
        rate = figures.get("finished_per_minute")
        rows = [
            ("Waiting", figures.get("depth")),
            ("Oldest waiting", _seconds(figures.get("oldest_age"))),
            ("Consumers", "unknown (workers did not answer)" if consumers is None else consumers),
            ("Finished per minute", "unknown" if rate is None else f"{rate:.1f}"),
        ]
        if figures.get("no_consumer_for") is not None:
            rows.append(("No consumer for", _seconds(figures["no_consumer_for"])))
        if figures.get("no_progress_for") is not None:
            rows.append(("Nothing finished for", _seconds(figures["no_progress_for"])))
    elif rule == rules.TASK_OVERDUE:
        rows = [
            ("Tasks over the limit", figures.get("count")),
            ("Limit", _seconds(figures.get("limit"))),
            ("Longest running", _seconds(figures.get("longest"))),
        ]
    elif rule == rules.QUEUE_PAUSED:
        rows = [
            ("Paused for", _seconds(figures.get("paused_for"))),
            ("Paused by", figures.get("paused_by")),
            ("Reason given", figures.get("reason")),
            ("Waiting", figures.get("depth")),
        ]
    elif rule == rules.WORKER_LOST:
        rows = [
            ("Silent for", _seconds(figures.get("silent_for"))),
            ("Tasks it was running", figures.get("running")),
            ("Lost tasks not retried", figures.get("lost")),
        ]
    else:
        rows = [
            ("Oldest unwritten event", _seconds(figures.get("lag_seconds"))),
            ("Stream entries not read", figures.get("lag_entries")),
        ]
    return [(label, "unknown" if value is None else str(value)) for label, value in rows]


def _links(incident: AlertIncident) -> list[tuple[str, str]]:
    subject = incident.subject
    if incident.rule in (rules.QUEUE_STUCK, rules.QUEUE_PAUSED):
        return [
            ("Queues", _url(reverse("queues"))),
            (f"Tasks on {subject}", _url(reverse("tasks"), {"queue": subject})),
        ]
    if incident.rule == rules.TASK_OVERDUE:
        return [("Running tasks", _url(reverse("tasks"), {"name": subject, "state": "STARTED"}))]
    if incident.rule == rules.WORKER_LOST:
        return [("Its lost tasks", _url(reverse("tasks"), {"worker": subject, "state": "LOST"}))]
    return [("Overview", _url(reverse("overview")))]


def _task_links(figures: Mapping[str, Any]) -> list[tuple[str, str]]:
    out = []
    for task in figures.get("tasks") or []:
        task_id = str(task.get("task_id") or "")
        try:
            link = _url(reverse("task-detail", args=[task_id]))
        except NoReverseMatch:  # an id the URL pattern cannot hold
            link = _url(reverse("tasks"), {"q": task_id})
        out.append((f"{task_id} ({_seconds(task.get('runtime'))})", link))
    return out


def context(incident: AlertIncident, kind: NoticeKind, now: dt.datetime) -> dict[str, Any]:
    details = incident.details or {}
    figures = details.get("figures") or {}
    return {
        "kind": kind,
        "incident": incident,
        "headline": incident.headline,
        "summary": incident.summary,
        "cause": details.get("cause") or "",
        "figures": _figures(incident.rule, figures),
        "recovery_figures": _figures(incident.rule, details.get("at_recovery") or {})
        if kind == "resolved" and details.get("at_recovery")
        else [],
        "tasks": _task_links(figures),
        "links": _links(incident),
        "incidents_url": _url(reverse("incidents")),
        "open_for": _open_for(incident, now),
        "opened_at": incident.opened_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }


def build_message(
    incident: AlertIncident, kind: NoticeKind, now: dt.datetime, to: list[str]
) -> EmailMultiAlternatives:
    ctx = context(incident, kind, now)
    message = EmailMultiAlternatives(
        subject=subject_line(incident, kind, now),
        body=render_to_string("emails/alert.txt", ctx),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=to,
        headers={"X-Tasktrail-Incident": str(incident.pk), "X-Tasktrail-Notice": kind},
    )
    message.attach_alternative(render_to_string("emails/alert.html", ctx), "text/html")
    return message


def send_notice(incident: AlertIncident, kind: NoticeKind, now: dt.datetime) -> int:
    """Send one notice; the number of recipients (0: nobody to send to). Raises on failure."""
    to = recipients()
    if not to:
        return 0
    build_message(incident, kind, now, to).send(fail_silently=False)
    return len(to)

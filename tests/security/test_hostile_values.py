"""Hostile task values (script tags, attribute breakers, javascript: URLs, invalid UTF-8, control
characters, 1 MB strings, RTL overrides), recorded through the real ingest path, rendered by every
page, partial, API response, alert mail and /metrics: escaped, never executed, never a 500."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from dashboard.alerts import rules
from dashboard.alerts.incidents import sync_incidents
from dashboard.alerts.mail import build_message
from dashboard.alerts.runner import CheckRunner
from dashboard.alerts.task_figures import running_tasks
from dashboard.models import AlertIncident, OperatorAction, TaskAttempt, TaskRun
from dashboard.pagination import Cursor
from tests.overview_figures import measure_overview
from tests.security.conftest import (
    HOSTILE,
    KINDS,
    MARK,
    HostileRow,
    client_for,
    id_value,
    injection_problems,
    record_hostile,
)

pytestmark = pytest.mark.django_db

# The task page shows at most this much of the arguments (the API has them whole).
PAGE_BUDGET = 512 * 1024


@pytest.fixture(params=KINDS)
def row(request: Any, db: Any, redis_client: Any) -> Iterator[HostileRow]:
    """One hostile row per kind; its queue is also declared on the broker with a message."""
    hostile = record_hostile(request.param)
    queue = id_value(request.param)
    redis_client.sadd("_kombu.binding.default", f"{queue}\x06\x16\x06\x16{queue}")
    redis_client.lpush(queue, json.dumps({"headers": {"id": hostile.task_id}}))
    yield hostile
    redis_client.delete(queue)


def assert_clean_html(response: Any, row: HostileRow, *, full_page: bool = True) -> str:
    assert response.status_code in (200, 286), response.content[:300]  # 286: htmx, stop polling
    body = response.content.decode("utf-8")  # valid UTF-8, whatever the task sent
    assert injection_problems(body, full_page=full_page) == []
    if any(c in row.value for c in "<>\"'"):
        assert row.value[:200] not in body
    return body


def page_urls(row: HostileRow) -> list[tuple[str, dict[str, Any]]]:
    """Every page and partial where the row's values appear, with the htmx headers if any."""
    htmx = {"HX-Request": "true"}
    value = id_value(row.kind)
    filters = {"name": value, "queue": value, "worker": f"w-{value}"[:255], "q": value}
    oldest = Cursor(timezone.now() - dt.timedelta(days=1), 0).encode()
    return [
        (reverse("overview"), {}),
        (reverse("overview"), htmx),
        (reverse("tasks"), {}),
        (reverse("tasks"), htmx),
        (f"{reverse('tasks')}?newer={oldest}", htmx),
        (f"{reverse('tasks')}?name={_q(value)}", {}),
        (f"{reverse('tasks')}?{_qs(filters)}", {}),
        (reverse("task-detail", args=[row.task_id]), {}),
        (reverse("task-detail", args=[row.task_id]), htmx),
        (reverse("task-detail", args=[row.running_id]), {}),
        (reverse("task-detail", args=[row.running_id]), htmx),
        (f"{reverse('task-stats')}?name={_q(value)}", {}),
        (reverse("task-stats"), {}),
        (reverse("queues"), {}),
        (reverse("queues"), htmx),
        (f"{reverse('bulk-confirm')}?action=retry&{_qs({'name': value})}", {}),
        (f"{reverse('bulk-confirm')}?action=retry&{_qs({'task_id': row.task_id})}", {}),
    ]


def _q(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _qs(params: dict[str, str]) -> str:
    from urllib.parse import urlencode

    return urlencode(params)


def test_hostile_rows_keep_their_values(row):
    task = TaskRun.objects.get(task_id=row.task_id)
    assert MARK in task.name and MARK in (task.worker or "")
    assert MARK in (task.exc_message or "")
    if row.kind == "huge":  # 1 MB: no id is that long, and no call is kept at that size
        assert task.input_id is None and task.args is None and task.kwargs is None
    else:
        assert MARK in (task.input_id or "")
        assert MARK in (task.args or "") and MARK in (task.kwargs or "")


def test_every_page_and_partial_escapes_hostile_values(row, redis_client):
    measure_overview(client=redis_client)  # the overview's queue table shows the hostile queue
    client = client_for("admin")
    for url, headers in page_urls(row):
        response = client.get(url, headers=headers)
        assert_clean_html(response, row, full_page=not headers)


def test_task_page_stays_usable_with_a_1_mb_value():
    row = record_hostile("huge")
    client = client_for("viewer")
    response = client.get(reverse("task-detail", args=[row.task_id]))
    body = assert_clean_html(response, row)
    assert len(response.content) < PAGE_BUDGET  # arguments cut at 64 KiB on the page
    assert "Arguments" in body and "…" in body
    assert len(client.get(reverse("tasks")).content) < PAGE_BUDGET


def test_the_api_does_not_carry_arguments_over_the_cap():
    row = record_hostile("huge")
    response = client_for("token").get(reverse("api-task", args=[row.task_id]))
    data = response.json()
    assert data["args"] is None and data["kwargs"] is None
    assert len(response.content) < PAGE_BUDGET


def test_action_answers_and_audit_page_escape_hostile_values(row):
    viewer, operator = client_for("viewer"), client_for("operator")
    refused = viewer.post(reverse("task-action", args=[row.task_id, "cancel"]), {"reason": "x"})
    assert refused.status_code == 403
    assert injection_problems(refused.content.decode(), full_page=True) == []
    htmx = operator.post(
        reverse("task-action", args=[row.running_id, "cancel"]), {"reason": "not pending"},
        headers={"HX-Request": "true"},
    )  # fmt: skip
    assert htmx.status_code == 200
    assert injection_problems(htmx.content.decode(), full_page=False) == []
    assert OperatorAction.objects.count() == 2
    assert_clean_html(viewer.get(reverse("audit")), row)


@pytest.mark.parametrize("role", ["viewer", "token"])
def test_api_round_trips_hostile_values(row, role):
    client = client_for(role)
    listing = client.get(reverse("api-tasks"), {"limit": "200"})
    assert listing.status_code == 200 and listing["Content-Type"] == "application/json"
    by_id = {t["task_id"]: t for t in json.loads(listing.content)["results"]}
    stored = TaskRun.objects.get(task_id=row.task_id)
    assert by_id[row.task_id]["name"] == stored.name
    assert by_id[row.task_id]["input_id"] == stored.input_id
    assert by_id[row.task_id]["worker"] == stored.worker
    assert by_id[row.task_id]["error"] == {"type": stored.exc_type, "message": stored.exc_message}
    detail = client.get(reverse("api-task", args=[row.task_id])).json()
    last = TaskAttempt.objects.filter(task_id=row.task_id).order_by("attempt").last()
    assert last is not None and detail["attempts"][-1]["traceback"] == last.traceback
    assert detail["url"] == reverse("task-detail", args=[row.task_id])


def open_overdue_incident() -> AlertIncident:
    """The alert path from the rows: running too long → verdict → incident."""
    now = timezone.now()
    verdicts = rules.evaluate_tasks(running_tasks(now, lambda name: 1.0, 1.0))
    sync_incidents(verdicts, {rules.TASK_OVERDUE}, now)
    return AlertIncident.objects.get()


def test_alert_mail_escapes_hostile_values(row):
    incident = open_overdue_incident()
    assert MARK in incident.subject
    message = build_message(incident, "opened", timezone.now(), ["oncall@example.com"])
    html = message.alternatives[0][0]
    assert injection_problems(str(html), full_page=True) == []
    assert row.running_id in message.body or row.kind == "huge"  # text part: plain, unescaped


def test_alert_mail_headers_cannot_be_injected(row):
    incident = open_overdue_incident()
    message = build_message(incident, "opened", timezone.now(), ["oncall@example.com"])
    parsed = email.message_from_bytes(message.message().as_bytes(), policy=email.policy.default)
    assert "Set-Cookie" not in parsed and MARK not in "".join(parsed.keys())
    assert "\n" not in str(parsed["Subject"]) and "\r" not in str(parsed["Subject"])


def test_incidents_page_and_banner_escape_hostile_values(row):
    open_overdue_incident()
    client = client_for("viewer")
    body = assert_clean_html(client.get(reverse("incidents")), row)
    assert "running too long" in body
    assert_clean_html(client.get(reverse("tasks")), row)  # the banner


def test_metrics_stay_parsable_with_hostile_values(row, settings, redis_client):
    settings.TASKTRAIL_METRICS_TOKEN = "metrics-token"
    open_overdue_incident()
    # /metrics exports what the monitor measured: its check reads the hostile queue off the broker
    CheckRunner(client=redis_client, probe=lambda: None).run_once()
    response = client_for("anonymous").get(
        reverse("metrics"), headers={"Authorization": "Bearer metrics-token"}
    )
    assert response.status_code == 200
    families = list(text_string_to_metric_families(response.content.decode("utf-8")))
    queue_labels = {s.labels["queue"] for f in families for s in f.samples if "queue" in s.labels}
    assert id_value(row.kind) in queue_labels  # the label round-trips through the exposition


@pytest.mark.parametrize("kind", ["script", "attribute", "huge", "rtl_override"])
def test_inspector_finds_a_value_rendered_unescaped(kind):
    assert injection_problems(f"<p>{HOSTILE[kind]}</p>", full_page=False) != []


def test_inspector_finds_a_javascript_link():
    html = f'<a href="{HOSTILE["javascript_url"]}">x</a>'
    assert injection_problems(html, full_page=False) != []

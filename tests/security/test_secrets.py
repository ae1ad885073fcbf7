"""Values under redacted keys (password, token, card, authorization, cvv; nested; positional by
parameter name) appear in no page, partial, API answer, alert mail, admin page or log line."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from dashboard.alerts import rules
from dashboard.alerts.incidents import sync_incidents
from dashboard.alerts.mail import build_message
from dashboard.alerts.task_figures import running_tasks
from dashboard.models import AlertIncident, TaskRun
from tasktrail.events import encode_batch, make_event
from tasktrail.task_inputs import extract_input_id, resolve_rule
from tests.security.conftest import client_for

pytestmark = pytest.mark.django_db

SECRETS = [
    "S3cr3t-pw-1",
    "S3cr3t-tok-2",
    "S3cr3t-card-3",
    "S3cr3t-auth-4",
    "S3cr3t-cvv-5",
    "S3cr3t-pos-6",
    "S3cr3t-passwd-7",
]
ARGS = ["ORD-1", "S3cr3t-pos-6"]
ARG_NAMES = "order_id,card_token"
KWARGS = {
    "password": "S3cr3t-pw-1",
    "api_token": "S3cr3t-tok-2",
    "payment": {"card": {"number": "S3cr3t-card-3"}, "amount": 12},
    "headers": {"Authorization": "Bearer S3cr3t-auth-4"},
    "items": [{"sku": "SKU-1", "CVV": "S3cr3t-cvv-5"}],
    "Old_Passwd": "S3cr3t-passwd-7",
}


app = Celery("security-tests", set_as_current=False)


@app.task
def charge(order_id: str, card_token: str, **kwargs: Any) -> None:
    """The task whose calls carry the secrets; the recorder reads its signature."""


@app.task
def pay(card_token: str, amount: int) -> None:
    """No *_id parameter: the recorder falls back to the first positional argument."""


def assert_no_secret(text: str, where: str) -> None:
    found = [s for s in SECRETS if s in text]
    assert not found, f"{found} in {where}"


@pytest.fixture
def log_lines(caplog: Any, capfd: Any) -> Iterator[Any]:
    """Everything logged (any logger, DEBUG up) and written to stdout/stderr while a test runs."""
    caplog.set_level(logging.DEBUG)
    tasktrail = logging.getLogger("tasktrail")
    level, tasktrail.level = tasktrail.level, logging.DEBUG
    tasktrail.propagate = True

    def read() -> str:
        out, err = capfd.readouterr()
        records = caplog.get_records("setup") + caplog.get_records("call")
        return "\n".join(f"{r.name}: {r.getMessage()} {r.exc_text or ''}" for r in records) + (
            out + err
        )

    yield read
    tasktrail.level, tasktrail.propagate = level, False


@pytest.fixture
def secret_tasks(db: Any, redis_client: Any, log_lines: Any) -> dict[str, str]:
    """A failed and a running task called with secrets, through the stream and the monitor."""
    t0 = time.time() - 120
    input_id = extract_input_id(resolve_rule(charge), ARGS, KWARGS)
    assert input_id == "ORD-1"
    call = {
        "args": json.dumps(ARGS, ensure_ascii=False),
        "kwargs": json.dumps(KWARGS, ensure_ascii=False),
        "arg_names": ARG_NAMES,
        "input_id": input_id,
    }
    failed, running = f"sec-f-{time.time_ns()}", f"sec-r-{time.time_ns()}"
    events = [
        make_event("published", failed, t0, name="shop.charge", queue="default", retries=0,
                   published_at=t0, **call),
        make_event("started", failed, t0 + 1, retries=0, hostname="w1@h", pid=3),
        make_event("failed", failed, t0 + 2, retries=0, hostname="w1@h", pid=3,
                   exc_type="PaymentDeclined", exc_message="declined", traceback="Traceback"),
        make_event("published", running, t0, name="shop.charge", queue="default", retries=0,
                   published_at=t0, **call),
        make_event("started", running, t0 + 1, retries=0, hostname="w1@h", pid=4),
    ]  # fmt: skip
    redis_client.xadd(settings.TASKTRAIL_STREAM, encode_batch(events))
    call_command("monitor", "--drain")
    assert TaskRun.objects.filter(task_id__in=[failed, running]).count() == 2
    return {"failed": failed, "running": running}


def page_urls(tasks: dict[str, str]) -> list[tuple[str, dict[str, str]]]:
    htmx = {"HX-Request": "true"}
    return [
        (reverse("overview"), {}),
        (reverse("overview"), htmx),
        (reverse("tasks"), {}),
        (reverse("tasks"), htmx),
        (reverse("tasks") + "?q=ORD-1", {}),
        (reverse("task-detail", args=[tasks["failed"]]), {}),
        (reverse("task-detail", args=[tasks["failed"]]), htmx),
        (reverse("task-detail", args=[tasks["running"]]), {}),
        (reverse("task-detail", args=[tasks["running"]]), htmx),
        (reverse("task-stats"), {}),
        (reverse("bulk-confirm") + "?action=retry&state=FAILURE", {}),
        (reverse("audit"), {}),
        (reverse("incidents"), {}),
    ]


def test_the_log_capture_sees_the_monitor(secret_tasks, log_lines):
    assert "tasktrail" in log_lines()  # the ingest's own lines are among those checked


def test_the_stored_row_keeps_the_real_arguments_for_a_retry(secret_tasks):
    stored = TaskRun.objects.get(task_id=secret_tasks["failed"])
    assert "S3cr3t-pw-1" in (stored.kwargs or "") and "S3cr3t-pos-6" in (stored.args or "")


def test_no_secret_in_any_page_or_partial(secret_tasks, log_lines):
    client = client_for("admin")
    client.post(
        reverse("task-action", args=[secret_tasks["failed"], "retry"]), {"reason": "card fixed"}
    )
    for url, headers in page_urls(secret_tasks):
        response = client.get(url, headers=headers)
        assert response.status_code in (200, 286), url
        assert_no_secret(response.content.decode(), url)
    assert_no_secret(log_lines(), "the logs")


def test_the_task_page_shows_the_masks(secret_tasks):
    body = client_for("viewer").get(reverse("task-detail", args=[secret_tasks["failed"]]))
    text = body.content.decode()
    assert text.count("••••") >= len(SECRETS) and "ORD-1" in text and "SKU-1" in text


@pytest.mark.parametrize("role", ["viewer", "token"])
def test_no_secret_in_the_api(secret_tasks, log_lines, role):
    client = client_for(role)
    listing = client.get(reverse("api-tasks"))
    assert listing.status_code == 200
    assert_no_secret(listing.content.decode(), "GET /api/tasks")
    for task_id in secret_tasks.values():
        detail = client.get(reverse("api-task", args=[task_id]))
        assert detail.status_code == 200
        assert_no_secret(detail.content.decode(), f"GET /api/tasks/{task_id}")
        assert_no_secret(json.dumps(detail.json(), ensure_ascii=False), "decoded API JSON")
    assert_no_secret(log_lines(), "the logs")


def test_no_secret_in_the_alert_mail(secret_tasks, log_lines):
    now = timezone.now()
    sync_incidents(
        rules.evaluate_tasks(running_tasks(now, lambda name: 1.0, 1.0)), {rules.TASK_OVERDUE}, now
    )
    message = build_message(AlertIncident.objects.get(), "opened", now, ["oncall@example.com"])
    raw = message.message().as_string()
    assert secret_tasks["running"] in message.body
    assert_no_secret(message.body, "the text mail")
    assert_no_secret(str(message.alternatives[0][0]), "the HTML mail")
    assert_no_secret(raw, "the raw mail")
    assert_no_secret(log_lines(), "the logs")


def test_no_secret_in_the_admin(secret_tasks):
    client = Client()
    client.force_login(User.objects.create_superuser("sec-admin"))
    stored = TaskRun.objects.get(task_id=secret_tasks["failed"])
    for url in [
        reverse("admin:dashboard_taskrun_changelist"),
        reverse("admin:dashboard_taskrun_change", args=[stored.pk]),
        reverse("admin:dashboard_taskattempt_changelist"),
    ]:
        response = client.get(url)
        assert response.status_code == 200, url
        assert_no_secret(response.content.decode(), url)


def test_a_secret_first_argument_never_becomes_the_input_id():
    assert extract_input_id(resolve_rule(pay), ["S3cr3t-pos-6", 12], {}) is None

"""Operator actions over HTTP: the authorization matrix, CSRF, confirmation, audit page."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from dashboard.ingest.writer import write_events
from dashboard.models import OperatorAction, TaskRun
from tests.conftest import event, new_task_id

pytestmark = pytest.mark.django_db(transaction=True)

T0 = 1_750_000_000.0
ROLES = ["anonymous", "viewer", "operator", "admin"]


def client_for(role: str) -> Client:
    client = Client()
    if role != "anonymous":
        user = User.objects.create_user(f"{role}-{new_task_id()}")
        user.groups.add(Group.objects.get(name=role))
        client.force_login(user)
    return client


def failed_task() -> str:
    task_id = new_task_id()
    write_events([
        event("published", task_id, T0, name="workers.tasks.send_invoice", queue="default",
              args="[1]", kwargs="{}", published_at=T0),
        event("failed", task_id, T0 + 1, exc_type="ValueError", exc_message="x"),
    ])  # fmt: skip
    return task_id


def queued_task() -> str:
    task_id = new_task_id()
    name = "workers.tasks.send_invoice"
    write_events(
        [event("published", task_id, T0, name=name, queue="default", args="[2]", kwargs="{}",
               published_at=T0)]
    )  # fmt: skip
    return task_id


def running_task() -> str:
    task_id = new_task_id()
    write_events([event("started", task_id, T0, name="workers.tasks.build_report", retries=0)])
    return task_id


def published_messages(redis_client) -> int:
    return redis_client.llen("default")


# (endpoint, make target, extra form fields, roles allowed)
MATRIX = [
    ("retry", failed_task, {}, {"operator", "admin"}),
    ("cancel", queued_task, {}, {"operator", "admin"}),
    ("terminate", running_task, {"confirm": "TERMINATE"}, {"admin"}),
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("kind", "make", "extra", "allowed"), MATRIX)
def test_single_action_authorization_matrix(redis_client, role, kind, make, extra, allowed):
    task_id = make()
    client = client_for(role)
    response = client.post(
        reverse("task-action", args=[task_id, kind]), {"reason": "matrix", **extra}
    )
    if role == "anonymous":
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
        assert not OperatorAction.objects.exists()
    elif role in allowed:
        assert response.status_code == 302  # back to the task page, flash message set
        assert OperatorAction.objects.get().outcome == "done"
    else:
        assert response.status_code == 403
        assert OperatorAction.objects.get().outcome == "refused"
    if kind == "retry" and role not in allowed:
        assert published_messages(redis_client) == 0
        assert TaskRun.objects.get(task_id=task_id).retried_as is None


@pytest.mark.parametrize("role", ROLES)
def test_bulk_action_authorization_matrix(redis_client, role):
    ids = [failed_task(), failed_task()]
    client = client_for(role)
    response = client.post(
        reverse("bulk-action"),
        {"action": "retry", "reason": "bulk matrix", "task_id": ids, "expected_count": "2"},
    )
    if role == "anonymous":
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    elif role in ("operator", "admin"):
        assert response.status_code == 302
        assert published_messages(redis_client) == 2
    else:
        assert response.status_code == 403
        assert published_messages(redis_client) == 0


@pytest.mark.parametrize("kind", ["retry", "cancel", "terminate"])
def test_actions_refuse_get(kind):
    response = client_for("admin").get(reverse("task-action", args=["x", kind]))
    assert response.status_code == 405


def test_csrf_is_enforced(redis_client):
    client = Client(enforce_csrf_checks=True)
    user = User.objects.create_user("csrf-op")
    user.groups.add(Group.objects.get(name="operator"))
    client.force_login(user)
    task_id = failed_task()
    response = client.post(reverse("task-action", args=[task_id, "retry"]), {"reason": "x"})
    assert response.status_code == 403
    assert published_messages(redis_client) == 0


def test_reason_is_required_over_http(redis_client):
    task_id = failed_task()
    response = client_for("operator").post(
        reverse("task-action", args=[task_id, "retry"]), {"reason": ""}
    )
    assert response.status_code == 302
    assert published_messages(redis_client) == 0
    assert not OperatorAction.objects.exists()


def test_terminate_without_typed_confirmation_is_refused(redis_client):
    task_id = running_task()
    client_for("admin").post(reverse("task-action", args=[task_id, "terminate"]), {"reason": "x"})
    assert TaskRun.objects.get(task_id=task_id).terminate_requested_at is None


def test_htmx_retry_updates_the_actions_panel_in_place(redis_client):
    task_id = failed_task()
    response = client_for("operator").post(
        reverse("task-action", args=[task_id, "retry"]), {"reason": "fixed"},
        headers={"HX-Request": "true"},
    )  # fmt: skip
    body = response.content.decode()
    assert response.status_code == 200
    assert 'id="task-actions"' in body and "<html" not in body
    assert "Retrying 1 task" in body
    new_id = TaskRun.objects.get(task_id=task_id).retried_as
    assert new_id and new_id in body
    message = json.loads(redis_client.lindex("default", -1))
    assert message["headers"]["id"] == new_id


def test_buttons_follow_the_role(redis_client):
    task_id = failed_task()
    url = reverse("task-detail", args=[task_id])
    assert "Retry task" not in client_for("viewer").get(url).content.decode()
    assert "Retry task" in client_for("operator").get(url).content.decode()
    running = reverse("task-detail", args=[running_task()])
    assert "Terminate task" not in client_for("operator").get(running).content.decode()
    assert "Terminate task" in client_for("admin").get(running).content.decode()


def test_bulk_confirmation_shows_the_exact_count_and_filter(redis_client):
    for _ in range(3):
        failed_task()
    response = client_for("operator").get(
        reverse("bulk-confirm"), {"action": "retry", "state": "FAILURE"}
    )
    body = response.content.decode()
    assert "Retry 3 tasks?" in body and "state FAILURE" in body
    assert 'name="expected_count" value="3"' in body


def test_bulk_confirmation_refuses_an_empty_filter():
    response = client_for("operator").get(reverse("bulk-confirm"), {"action": "retry"})
    assert response.status_code == 400
    assert "never runs on everything" in response.content.decode()


def test_audit_page_lists_and_filters_actions(redis_client):
    task_id = failed_task()
    client_for("operator").post(
        reverse("task-action", args=[task_id, "retry"]), {"reason": "<b>why</b>"}
    )
    client_for("viewer").post(
        reverse("task-action", args=[failed_task(), "retry"]), {"reason": "try"}
    )
    viewer = client_for("viewer")
    body = viewer.get(reverse("audit")).content.decode()
    assert "&lt;b&gt;why&lt;/b&gt;" in body and "Refused" in body and "Done" in body
    only_refused_user = OperatorAction.objects.get(outcome="refused").username
    filtered = viewer.get(reverse("audit"), {"user": only_refused_user}).content.decode()
    assert "&lt;b&gt;why&lt;/b&gt;" not in filtered
    assert viewer.get(reverse("audit"), {"kind": "explode"}).status_code == 400

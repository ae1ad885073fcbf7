"""Operator actions over HTTP: the authorization matrix, CSRF, confirmation, audit page."""

from __future__ import annotations

import datetime as dt
import html
import json

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from dashboard.ingest.writer import write_events
from dashboard.models import OperatorAction, TaskRun
from tests.catalog import register_demo_tasks
from tests.conftest import event, new_task_id

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _shop_catalog() -> None:
    """Retry decides from the shop's task catalog: the demo's tasks, as its worker reports them."""
    register_demo_tasks()


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
        action = OperatorAction.objects.get()
        assert response["Location"] == reverse("audit-action", args=[action.pk])
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


# -- honest buttons: offered only where they can succeed, otherwise the reason --------------------


def failed_opt_out_task() -> str:
    task_id = new_task_id()
    write_events([
        event("published", task_id, T0, name="workers.tasks.charge_card", queue="payments",
              args='["PAY-1", 100]', kwargs="{}", published_at=T0),
        event("failed", task_id, T0 + 1, exc_type="PaymentDeclined", exc_message="declined"),
    ])  # fmt: skip
    return task_id


def terminated_task(terminate_requested: bool = True) -> str:
    """Ran 23 s, then its worker reported it terminated: no exception type, no runtime."""
    task_id = new_task_id()
    write_events([
        event("published", task_id, T0, name="workers.tasks.build_report", queue="default",
              args="[1]", kwargs="{}", published_at=T0),
        event("started", task_id, T0 + 1, retries=0, hostname="w1"),
        event("revoked", task_id, T0 + 24, retries=0, terminated=True,
              exc_message="terminated (signal 15)"),
    ])  # fmt: skip
    if terminate_requested:
        TaskRun.objects.filter(task_id=task_id).update(terminate_requested_at=T0_AWARE)
    return task_id


T0_AWARE = dt.datetime.fromtimestamp(T0 + 2, tz=dt.UTC)


def page(role: str, task_id: str) -> str:
    return client_for(role).get(reverse("task-detail", args=[task_id])).content.decode()


def test_task_page_of_an_opt_out_task_says_why_retry_is_not_offered(redis_client):
    body = page("operator", failed_opt_out_task())
    assert "Retry task" not in body
    assert (
        "Retry is not available: workers.tasks.charge_card opts out of operator retries "
        "(not idempotent)." in body
    )


def test_task_page_without_kept_arguments_says_why_retry_is_not_offered(redis_client):
    task_id = failed_task()
    TaskRun.objects.filter(task_id=task_id).update(args=None, args_dropped="over 64 KiB")
    body = page("operator", task_id)
    assert "Retry task" not in body
    assert "Retry is not available: its arguments were not kept (over 64 KiB)." in body


def test_task_page_of_a_retried_task_says_it_was_already_retried(redis_client):
    task_id = failed_task()
    TaskRun.objects.filter(task_id=task_id).update(retried_as="the-new-one")
    body = page("operator", task_id)
    assert "Retry task" not in body
    assert "Retry is not available: already retried as the-new-one." in body


def test_task_page_hides_reasons_from_a_role_without_the_action(redis_client):
    body = page("viewer", failed_opt_out_task())
    assert "is not available" not in body


def test_task_page_offers_no_retry_while_a_terminate_is_pending(redis_client):
    task_id = running_task()
    TaskRun.objects.filter(task_id=task_id).update(terminate_requested_at=T0_AWARE)
    body = page("admin", task_id)
    assert "Retry task" not in body
    assert (
        "Retry is not available: a terminate was requested; it can be retried once its worker "
        "reports it stopped." in body
    )


def test_task_page_offers_retry_once_a_terminated_task_has_stopped(redis_client):
    body = page("admin", terminated_task())
    assert "Retry task" in body


def test_terminated_task_error_names_the_operator_and_signal(redis_client):
    body = page("viewer", terminated_task())
    assert '<span class="error-text">Terminated by an operator (signal 15)</span>' in body
    assert "<strong>None</strong>" not in body


def test_terminated_task_runtime_is_from_start_to_finish(redis_client):
    body = page("viewer", terminated_task())
    assert "<div><dt>Runtime</dt><dd>23.0 s</dd></div>" in body


def test_actions_sit_above_the_attempts(redis_client):
    body = page("operator", failed_task())
    assert body.index('id="task-actions"') < body.index('id="att-h"')


def test_poll_of_a_running_task_keeps_the_actions_panel(redis_client):
    task_id = running_task()
    response = client_for("admin").get(
        reverse("task-detail", args=[task_id]), headers={"HX-Request": "true"}
    )
    body = response.content.decode()
    assert '<div id="actions-slot" hx-preserve="true"></div>' in body


def test_poll_that_finds_the_task_finished_redraws_the_actions_panel(redis_client):
    response = client_for("admin").get(
        reverse("task-detail", args=[terminated_task()]), headers={"HX-Request": "true"}
    )
    body = response.content.decode()
    assert "hx-preserve" not in body
    assert "Retry task" in body


def test_htmx_refused_input_answers_a_swapped_status_with_the_message(redis_client):
    task_id = failed_task()
    response = client_for("operator").post(
        reverse("task-action", args=[task_id, "retry"]), {"reason": " "},
        headers={"HX-Request": "true"},
    )  # fmt: skip
    body = response.content.decode()
    assert response.status_code == 422
    assert 'id="task-actions"' in body
    assert "Say why: a reason is required for every action." in body


def test_htmx_refused_permission_answers_403_with_the_message(redis_client):
    task_id = failed_task()
    client = client_for("viewer")
    response = client.post(
        reverse("task-action", args=[task_id, "retry"]), {"reason": "please"},
        headers={"HX-Request": "true"},
    )  # fmt: skip
    assert response.status_code == 403
    assert 'id="task-actions"' in response.content.decode()
    assert "may not retry tasks." in response.content.decode()


def test_refused_action_is_still_listed_after_a_reload(redis_client):
    task_id = failed_opt_out_task()
    client = client_for("operator")
    client.post(
        reverse("task-action", args=[task_id, "retry"]), {"reason": "customer asked"},
        headers={"HX-Request": "true"},
    )  # fmt: skip
    body = client.get(reverse("task-detail", args=[task_id])).content.decode()
    assert "Refused — workers.tasks.charge_card opts out of operator retries" in body


def test_htmx_config_swaps_the_refusal_statuses(redis_client):
    body = page("viewer", failed_task())
    config = json.loads(html.unescape(body.split('name="htmx-config" content=\'')[1].split("'")[0]))
    swapped = [rule["code"] for rule in config["responseHandling"] if rule["swap"]]
    assert swapped == ["[23]..", "^(403|422)$"]
    assert config["allowEval"] is False


def test_bulk_confirmation_counts_only_the_tasks_acted_on(redis_client):
    good = [failed_task() for _ in range(3)]
    retried = failed_task()
    TaskRun.objects.filter(task_id=retried).update(retried_as="new-1")
    opted_out = failed_opt_out_task()
    response = client_for("operator").get(
        reverse("bulk-confirm"), {"action": "retry", "task_id": [*good, retried, opted_out]}
    )
    body = response.content.decode()
    assert "Retry 3 tasks?" in body
    assert "2 of the 5 tasks will be refused" in body
    assert "<li>1 — already retried</li>" in body
    assert (
        "<li>1 — workers.tasks.charge_card opts out of operator retries (not idempotent)</li>"
        in body
    )
    assert ">Retry 3 tasks</button>" in body


def test_bulk_confirmation_offers_no_form_when_every_task_would_be_refused(redis_client):
    opted_out = [failed_opt_out_task() for _ in range(2)]
    body = (
        client_for("operator")
        .get(reverse("bulk-confirm"), {"action": "retry", "task_id": opted_out})
        .content.decode()
    )
    assert "No task in this selection can be retried." in body
    assert 'name="reason"' not in body

"""Clearing a task's identity conflict: reason → permission → state → audit → write, the page's
button for admins only, and a disagreeing event arriving after the clear records it again."""

from __future__ import annotations

import time

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from dashboard.ingest.monitor import Monitor
from dashboard.ingest.stream import StreamConsumer
from dashboard.models import OperatorAction, OperatorActionTarget, TaskRun
from dashboard.selectors.action_options import IDENTITY_CONFLICT, why_not
from dashboard.selectors.catalog import task_catalog
from dashboard.services import ActionInputError
from dashboard.services_conflicts import task_conflict_clear
from tasktrail.events import encode_batch
from tests.catalog import register_task
from tests.conftest import event, new_task_id

pytestmark = pytest.mark.django_db(transaction=True)

NAME = "shop.send_invoice"
CONFLICT = ("identity_conflict_key", "identity_conflict_field", "identity_conflict")


def user_in(role: str) -> User:
    user = User.objects.create_user(f"{role}-{time.time_ns()}")
    if role != "nobody":
        user.groups.add(Group.objects.get(name=role))
    return User.objects.get(pk=user.pk)  # fresh permission cache


def drain(redis_client) -> None:
    Monitor(StreamConsumer(redis_client, settings.TASKTRAIL_STREAM, consumer="clear")).run(
        drain=True
    )


def xadd(redis_client, *events) -> None:
    redis_client.xadd(settings.TASKTRAIL_STREAM, encode_batch(list(events)))


def forged_publish(task_id: str, t0: float):
    return event(
        "published", task_id, t0 - 30, name=NAME, queue="default",
        args='[1, "attacker@evil.example"]', kwargs="{}", retries=0, published_at=t0 - 30,
    )  # fmt: skip


def conflicted_task(redis_client) -> str:
    """A failed task, then a forged publish of it: the row holds an identity conflict."""
    t0 = time.time() - 60
    task_id = new_task_id()
    xadd(
        redis_client,
        event("published", task_id, t0, name=NAME, queue="default", args='[1, "a@shop.example"]',
              kwargs="{}", retries=0, published_at=t0),
        event("failed", task_id, t0 + 1, name=NAME, retries=0, hostname="w1@host",
              exc_type="SMTPError", exc_message="down"),
    )  # fmt: skip
    drain(redis_client)
    xadd(redis_client, forged_publish(task_id, t0))
    drain(redis_client)
    assert TaskRun.objects.get(task_id=task_id).identity_conflict_field == "args"
    return task_id


def conflict_of(task_id: str) -> tuple:
    return TaskRun.objects.filter(task_id=task_id).values_list(*CONFLICT).get()


def test_an_admin_clears_the_conflict_audited_with_the_task_as_target(redis_client):
    register_task(NAME)
    task_id = conflicted_task(redis_client)
    assert (
        why_not("retry", TaskRun.objects.get(task_id=task_id), task_catalog()) == IDENTITY_CONFLICT
    )
    admin = user_in("admin")
    result = task_conflict_clear(user=admin, task_id=task_id, reason="  checked: a test publish ")
    assert result.done and result.permitted
    assert conflict_of(task_id) == (None, None, None)
    row = TaskRun.objects.get(task_id=task_id)
    assert row.args == '[1, "a@shop.example"]'  # the first publish is untouched
    assert why_not("retry", row, task_catalog()) is None
    action = result.action
    assert (action.kind, action.outcome, action.reason, action.username) == (
        "clear_conflict", "done", "checked: a test publish", admin.username,
    )  # fmt: skip
    assert OperatorAction.Kind(action.kind).label == "Clear identity conflict"
    target = OperatorActionTarget.objects.get(action=action)
    assert target.task_id == task_id
    assert "attacker@evil.example" in target.message and "args" in action.message


@pytest.mark.parametrize("role", ["nobody", "viewer", "operator"])
def test_other_roles_are_refused_and_audited_the_conflict_stays(redis_client, role):
    task_id = conflicted_task(redis_client)
    before = conflict_of(task_id)
    result = task_conflict_clear(user=user_in(role), task_id=task_id, reason="let me")
    assert not result.permitted and not result.done
    assert conflict_of(task_id) == before
    assert (result.action.kind, result.action.outcome) == ("clear_conflict", "refused")


@pytest.mark.parametrize(
    ("reason", "says"),
    [("", "a reason is required"), ("x" * 1001, "keep it to 1,000"), ("a\x1bb", r"U\+001B"),
     ("y" * 5_000_000, "keep it to 1,000")],
    ids=["empty", "long", "control", "huge"],
)  # fmt: skip
def test_the_reason_is_checked_before_the_permission(redis_client, reason, says):
    task_id = conflicted_task(redis_client)
    for role in ("viewer", "admin"):
        with pytest.raises(ActionInputError, match=says):
            task_conflict_clear(user=user_in(role), task_id=task_id, reason=reason)
    assert not OperatorAction.objects.filter(kind="clear_conflict").exists()
    assert conflict_of(task_id)[0] is not None


def test_a_task_without_a_conflict_or_unknown_is_refused_and_audited(redis_client):
    task_id = conflicted_task(redis_client)
    admin = user_in("admin")
    assert task_conflict_clear(user=admin, task_id=task_id, reason="checked").done
    again = task_conflict_clear(user=admin, task_id=task_id, reason="checked twice")
    assert (again.done, again.action.outcome) == (False, "refused")
    assert "no identity conflict" in again.message
    unknown = task_conflict_clear(user=admin, task_id="no-such-task", reason="checked")
    assert "no such task" in unknown.message


def test_a_disagreeing_event_after_the_clear_records_the_conflict_again(redis_client):
    task_id = conflicted_task(redis_client)
    first = conflict_of(task_id)
    task_conflict_clear(user=user_in("admin"), task_id=task_id, reason="checked")
    assert conflict_of(task_id) == (None, None, None)
    drain(redis_client)  # nothing new: stays cleared
    assert conflict_of(task_id) == (None, None, None)
    # the same forged event delivered again (another entry), then a different one
    row = TaskRun.objects.get(task_id=task_id)
    xadd(redis_client, forged_publish(task_id, row.published_at.timestamp()))
    drain(redis_client)
    again = conflict_of(task_id)
    assert again[1:] == first[1:]
    assert again[0] >= first[0]  # received later
    task_conflict_clear(user=user_in("admin"), task_id=task_id, reason="checked again")
    xadd(
        redis_client,
        event("received", task_id, time.time(), name="shop.other", queue="default",
              args='[1, "a@shop.example"]', kwargs="{}", retries=0),
    )  # fmt: skip
    drain(redis_client)
    assert conflict_of(task_id)[1:] == ("name", "shop.other")


def test_a_redelivered_entry_records_the_cleared_conflict_again(redis_client):
    """The very same entry read twice (a monitor that died before acknowledging it)."""
    from dashboard.ingest.bounds import stamp_received
    from dashboard.ingest.writer import write_events

    task_id = new_task_id()
    t0 = time.time() - 60
    real = stamp_received(f"{int(t0 * 1000)}-0", [
        event("published", task_id, t0, name=NAME, queue="default", args="[1]", kwargs="{}",
              retries=0, published_at=t0),
        event("succeeded", task_id, t0 + 1, name=NAME, retries=0, hostname="w1@host"),
    ])  # fmt: skip
    forged = stamp_received(
        f"{int(t0 * 1000) + 2000}-0",
        [event("failed", task_id, t0 + 2, name=NAME, retries=0, exc_type="E", exc_message="x")],
    )
    write_events(real + forged)
    recorded = conflict_of(task_id)
    assert recorded[1:] == ("state", "FAILURE (retries 0)")
    task_conflict_clear(user=user_in("admin"), task_id=task_id, reason="checked")
    write_events(forged)
    assert conflict_of(task_id) == recorded


def test_the_page_offers_the_clear_to_admins_only_and_the_post_clears(redis_client):
    task_id = conflicted_task(redis_client)
    url = reverse("task-detail", args=[task_id])
    clear = reverse("task-conflict-clear", args=[task_id])
    for role, offered in (("viewer", False), ("operator", False), ("admin", True)):
        client = Client()
        client.force_login(user_in(role))
        page = client.get(url).content.decode()
        assert 'id="identity-conflict"' in page
        assert (clear in page) is offered, role
    client = Client()
    client.force_login(user_in("operator"))
    assert client.post(clear, {"reason": "checked"}).status_code == 403
    client = Client()
    client.force_login(user_in("admin"))
    assert client.post(clear, {"reason": ""}).status_code == 302  # flashed, nothing done
    assert conflict_of(task_id)[0] is not None
    response = client.post(clear, {"reason": "checked with the shop"}, follow=True)
    assert response.status_code == 200
    assert conflict_of(task_id) == (None, None, None)
    assert 'id="identity-conflict"' not in response.content.decode()
    assert client.get(clear).status_code == 405

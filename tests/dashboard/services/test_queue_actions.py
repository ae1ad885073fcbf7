"""Pause, resume and purge through the service and the views: permissions, state checks, audit rows,
the durable pause (row and Redis set together), a broker or Redis that cannot be reached, and the
Queues page's display. Real Redis and database; the broadcast goes to the test's broker, where no
worker listens (the integration tests have real workers)."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from dashboard.models import OperatorAction, QueuePause
from dashboard.services import ActionInputError
from dashboard.services_queues import queue_pause, queue_purge, queue_resume
from tasktrail import queue_pauses

pytestmark = pytest.mark.django_db

QUEUE = "isolated"  # cleaned by the redis_client fixture


def person(role: str) -> User:
    user = User.objects.create_user(f"{role}-{uuid.uuid4().hex[:8]}")
    user.groups.add(Group.objects.get(name=role))
    return User.objects.get(pk=user.pk)


def shared_set(redis_client) -> dict[str, queue_pauses.Pause]:
    from django.conf import settings

    return queue_pauses.paused(redis_client, settings.TASKTRAIL_STREAM)


def test_a_viewer_may_not_pause_and_the_refusal_is_audited(redis_client):
    result = queue_pause(user=person("viewer"), queue=QUEUE, reason="x")
    assert not result.permitted
    assert (result.action.outcome, result.action.scope) == ("refused", f"queue {QUEUE}")
    assert not QueuePause.objects.exists() and shared_set(redis_client) == {}


def test_pause_is_durable_then_refused_twice_and_resume_ends_it(redis_client):
    operator = person("operator")
    paused = queue_pause(user=operator, queue=QUEUE, reason="provider down")
    assert paused.action.outcome in ("done", "partial")
    row = QueuePause.objects.get(queue=QUEUE)
    assert (row.paused_by, row.reason, row.action_id) == (
        operator.username,
        "provider down",
        paused.action.pk,
    )
    entry = shared_set(redis_client)[QUEUE]
    assert (entry.by, entry.reason) == (operator.username, "provider down")

    again = queue_pause(user=person("admin"), queue=QUEUE, reason="also")
    assert again.action.outcome == "refused"
    assert f"already paused, by {operator.username}" in again.message

    resumed = queue_resume(user=operator, queue=QUEUE, reason="provider back")
    assert resumed.action.outcome in ("done", "partial")
    assert not QueuePause.objects.exists() and shared_set(redis_client) == {}
    assert queue_resume(user=operator, queue=QUEUE, reason="x").action.outcome == "refused"


@pytest.mark.parametrize("name", ["", " padded", "x" * 256, "line\nbreak", "nul\x00"], ids=repr)
def test_an_unusable_queue_name_is_an_input_error(redis_client, name):
    with pytest.raises(ActionInputError):
        queue_pause(user=person("operator"), queue=name, reason="x")
    assert not QueuePause.objects.exists()


def test_a_reason_is_required(redis_client):
    with pytest.raises(ActionInputError):
        queue_pause(user=person("operator"), queue=QUEUE, reason="  ")


def test_a_broker_away_keeps_the_pause_and_says_the_workers_were_not_told(redis_client, settings):
    settings.TASKTRAIL_BROKER_URL = "redis://:hunter2@127.0.0.1:1/0"
    settings.TASKTRAIL_BROKER_TRANSPORT_OPTIONS = {}
    result = queue_pause(user=person("operator"), queue=QUEUE, reason="provider down")
    assert result.action.outcome == "partial"
    assert "the broadcast did not reach the workers" in result.message
    assert "hunter2" not in result.message
    assert QueuePause.objects.filter(queue=QUEUE).exists()
    assert QUEUE in shared_set(redis_client)


def test_redis_away_pauses_nothing(redis_client, settings):
    settings.REDIS_URL = "redis://:hunter2@127.0.0.1:1/0"
    result = queue_pause(user=person("operator"), queue=QUEUE, reason="provider down")
    assert result.action.outcome == "failed"
    assert result.message.startswith("Not paused: the paused set in Redis could not be written")
    assert "hunter2" not in result.message
    assert not QueuePause.objects.exists()


def test_purge_refusals_touch_nothing(redis_client):
    redis_client.lpush(QUEUE, "m1", "m2")
    refused = queue_purge(user=person("operator"), queue=QUEUE, confirm_name=QUEUE, reason="x")
    assert not refused.permitted
    wrong = queue_purge(user=person("admin"), queue=QUEUE, confirm_name="isolate", reason="x")
    assert wrong.action.outcome == "refused"
    assert redis_client.llen(QUEUE) == 2
    assert list(OperatorAction.objects.values_list("kind", "outcome")) == [
        ("purge_queue", "refused"),
        ("purge_queue", "refused"),
    ]


# -- views -----------------------------------------------------------------------------------------


def client_for(role: str) -> tuple[Client, User]:
    client, user = Client(), person(role)
    client.force_login(user)
    return client, user


def test_the_queues_page_shows_a_paused_queue_the_monitor_has_not_measured(redis_client):
    client, operator = client_for("operator")
    queue_pause(user=operator, queue="payments", reason="provider <b>down</b>")
    page = client.get(reverse("queues")).content.decode()
    assert "Paused, not measured" in page
    assert f"by {operator.username}, because provider &lt;b&gt;down&lt;/b&gt;" in page
    assert "action=resume&amp;queue=payments" in page
    assert "action=purge" not in page  # admins only
    admin, _ = client_for("admin")
    assert "action=purge&amp;queue=payments" in admin.get(reverse("queues")).content.decode()


def test_confirm_then_post_pauses_and_a_viewer_gets_403(redis_client):
    client, _ = client_for("operator")
    confirm = client.get(reverse("queue-confirm"), {"action": "pause", "queue": QUEUE})
    assert confirm.status_code == 200
    assert b'name="reason"' in confirm.content
    done = client.post(
        reverse("queue-action"), {"action": "pause", "queue": QUEUE, "reason": "provider down"}
    )
    assert done.status_code == 302 and done["Location"] == reverse("queues")
    assert QueuePause.objects.filter(queue=QUEUE).exists()

    viewer, _ = client_for("viewer")
    page = viewer.get(reverse("queue-confirm"), {"action": "resume", "queue": QUEUE})
    assert b"Your role does not allow this action." in page.content
    refused = viewer.post(
        reverse("queue-action"), {"action": "resume", "queue": QUEUE, "reason": "x"}
    )
    assert refused.status_code == 403
    assert QueuePause.objects.filter(queue=QUEUE).exists()


def test_purge_form_asks_for_the_name_and_bad_input_is_400(redis_client):
    admin, _ = client_for("admin")
    page = admin.get(reverse("queue-confirm"), {"action": "purge", "queue": QUEUE})
    assert b'name="confirm_name"' in page.content
    assert b"has not measured this queue" in page.content
    for data in (
        {"action": "explode", "queue": QUEUE, "reason": "x"},
        {"action": "pause", "queue": "a\x00b", "reason": "x"},
        {"action": "pause", "queue": QUEUE, "reason": "x\x00"},
    ):
        assert admin.post(reverse("queue-action"), data).status_code == 400
    assert not QueuePause.objects.exists()


# -- the reason first, refusals past the rate ------------------------------------------------------


@pytest.mark.parametrize("kind", ["pause", "resume", "purge"])
def test_a_huge_reason_from_a_viewer_stores_nothing(redis_client, kind):
    """The reason is checked before the permission: 2.4 MB from someone without the role is a 400
    and no audit row, not a refusal that keeps (part of) it."""
    client, _ = client_for("viewer")
    huge = "why " * 600_000
    data = {"action": kind, "queue": QUEUE, "reason": huge, "confirm_name": QUEUE}
    response = client.post(reverse("queue-action"), data)
    assert response.status_code == 400
    assert b"characters long; keep it to 1,000" in response.content
    assert not OperatorAction.objects.exists() and not QueuePause.objects.exists()
    with pytest.raises(ActionInputError):
        queue_pause(user=person("viewer"), queue=QUEUE, reason=huge)
    assert not OperatorAction.objects.exists()


def test_refused_queue_actions_past_the_limit_are_counted_on_one_row(redis_client):
    from dashboard import refusals

    viewer = person("viewer")
    total = refusals.LIMIT + 15
    results = [queue_purge(user=viewer, queue=QUEUE, confirm_name=QUEUE, reason=f"try {i}")
               for i in range(total)]  # fmt: skip
    assert all(not r.permitted for r in results)
    assert all(r.message == f"{viewer.username} may not purge queues." for r in results)
    rows = list(OperatorAction.objects.order_by("pk"))
    # within one minute: LIMIT rows, then one that counts the rest (two if the minute turned)
    assert refusals.LIMIT + 1 <= len(rows) <= refusals.LIMIT + 2
    assert [r.reason for r in rows[: refusals.LIMIT]] == [f"try {i}" for i in range(refusals.LIMIT)]
    assert rows[0].scope == f"queue {QUEUE}"
    assert all(r.outcome == "refused" for r in rows)
    assert "counted here only" in rows[-1].message


def test_an_operators_state_refusals_are_counted_too_and_each_is_told_why(redis_client):
    from dashboard import refusals

    operator = person("operator")
    results = [queue_resume(user=operator, queue=QUEUE, reason="again") for _ in range(15)]
    assert all(r.message == f"Refused: queue {QUEUE} is not paused." for r in results)
    assert refusals.LIMIT + 1 <= OperatorAction.objects.count() <= refusals.LIMIT + 2
    # an action carried out is always recorded
    paused = queue_pause(user=operator, queue=QUEUE, reason="provider down")
    assert paused.action.outcome in ("done", "partial") and QueuePause.objects.exists()

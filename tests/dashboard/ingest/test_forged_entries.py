"""Forged stream entries, XADDed after the real ones and processed by a real monitor, never
rewrite a task's history: the row keeps its first publish, records the conflict, and an operator
retry of it is refused until an admin has checked it."""

from __future__ import annotations

import time

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User

from dashboard.ingest.monitor import Monitor
from dashboard.ingest.stream import StreamConsumer
from dashboard.models import TaskRun
from dashboard.selectors.action_options import IDENTITY_CONFLICT
from dashboard.services import task_run_retry
from tasktrail.events import encode_batch
from tests.catalog import register_task
from tests.conftest import event, new_task_id

pytestmark = pytest.mark.django_db(transaction=True)

NAME = "shop.send_invoice"


def drain(redis_client) -> None:
    Monitor(StreamConsumer(redis_client, settings.TASKTRAIL_STREAM, consumer="forged")).run(
        drain=True
    )


def xadd(redis_client, *events) -> None:
    redis_client.xadd(settings.TASKTRAIL_STREAM, encode_batch(list(events)))


def real_failed_invoice(redis_client, t0: float) -> str:
    task_id = new_task_id()
    xadd(
        redis_client,
        event("published", task_id, t0, name=NAME, queue="default",
              args='[36210, "a@shop.example"]', kwargs="{}", input_id="36210", retries=0,
              published_at=t0),
    )  # fmt: skip
    xadd(
        redis_client,
        event("received", task_id, t0 + 0.1, retries=0, hostname="w1@host"),
        event("started", task_id, t0 + 0.2, name=NAME, retries=0, hostname="w1@host"),
        event("failed", task_id, t0 + 0.5, name=NAME, retries=0, hostname="w1@host",
              exc_type="SMTPError", exc_message="mail server down"),
    )  # fmt: skip
    return task_id


def operator() -> User:
    user = User.objects.create_user(f"operator-{new_task_id()}")
    user.groups.add(Group.objects.get(name="operator"))
    return User.objects.get(pk=user.pk)


@pytest.mark.parametrize("together", [False, True], ids=["two-batches", "one-batch"])
def test_a_forged_publish_keeps_the_real_call_and_blocks_the_retry(redis_client, together):
    register_task(NAME)
    t0 = time.time() - 60
    task_id = real_failed_invoice(redis_client, t0)
    if not together:
        drain(redis_client)
    # MIN used to pick this: a leading space sorts before "["
    xadd(
        redis_client,
        event("published", task_id, t0 - 30, name=NAME, queue="default",
              args=' [36210, "attacker@evil.example"]', kwargs="{}", input_id="36210",
              retries=0, published_at=t0 - 30),
    )  # fmt: skip
    drain(redis_client)
    row = TaskRun.objects.get(task_id=task_id)
    assert row.args == '[36210, "a@shop.example"]'
    assert row.state == "FAILURE"
    assert row.identity_conflict_field == "args"
    assert row.identity_conflict == ' [36210, "attacker@evil.example"]'
    assert row.identity_conflict_at is not None
    assert abs(row.identity_conflict_at.timestamp() - time.time()) < 600

    result = task_run_retry(user=operator(), task_id=task_id, reason="customer asked")
    assert result.refused == {task_id: IDENTITY_CONFLICT}
    assert TaskRun.objects.get(task_id=task_id).retried_as is None


def test_a_forged_failure_of_a_succeeded_task_changes_nothing_but_the_conflict(redis_client):
    t0 = time.time() - 60
    task_id = new_task_id()
    xadd(
        redis_client,
        event("published", task_id, t0, name=NAME, queue="default", args="[1]", kwargs="{}",
              retries=0, published_at=t0),
        event("started", task_id, t0 + 1, name=NAME, retries=0, hostname="w1@host"),
        event("succeeded", task_id, t0 + 2, name=NAME, retries=0, hostname="w1@host", runtime=1.0),
    )  # fmt: skip
    drain(redis_client)
    xadd(
        redis_client,
        event("failed", task_id, t0 + 3, name=NAME, retries=99, hostname="evil@host",
              exc_type="Forged", exc_message="run me again"),
    )  # fmt: skip
    drain(redis_client)
    row = TaskRun.objects.get(task_id=task_id)
    assert (row.state, row.retries, row.worker, row.exc_type) == ("SUCCESS", 0, "w1@host", None)
    assert (row.identity_conflict_field, row.identity_conflict) == ("state", "FAILURE (retries 99)")


def test_far_future_and_far_past_times_are_the_receive_time_and_flagged(redis_client):
    future, past = new_task_id(), new_task_id()
    xadd(
        redis_client,
        event("failed", future, 32_000_000_000.0, name=NAME, retries=0),  # the year 2984
        event("published", past, 946_684_801.0, name=NAME, retries=0, published_at=946_684_801.0),
    )
    before = time.time()
    drain(redis_client)
    for task_id in (future, past):
        row = TaskRun.objects.get(task_id=task_id)
        assert row.times_clamped
        for at in (row.first_seen_at, row.updated_at):
            assert before - 60 < at.timestamp() < time.time() + 1
    assert TaskRun.objects.get(task_id=past).published_at.timestamp() > before - 60


def test_a_hostname_with_a_line_break_cannot_forge_log_lines(redis_client):
    task_id = new_task_id()
    now = time.time()
    xadd(
        redis_client,
        event("started", task_id, now, name=NAME, retries=0,
              hostname="w1@host\r\n2026-01-01 INFO tasktrail.monitor all good"),
    )  # fmt: skip
    drain(redis_client)
    worker = TaskRun.objects.get(task_id=task_id).worker
    assert "\r" not in worker and "\n" not in worker
    assert worker.startswith("w1@host\ufffd\ufffd")


@pytest.mark.parametrize("count", [100_000, 750_000], ids=["200kB", "1.5MB"])
def test_arguments_over_the_cap_are_not_kept(redis_client, count):
    task_id = new_task_id()
    now = time.time()
    huge = "[" + ",".join(["1"] * count) + "]"
    xadd(
        redis_client,
        event("published", task_id, now, name=NAME, queue="default", args=huge, kwargs="{}",
              retries=0, published_at=now),
    )  # fmt: skip
    drain(redis_client)
    row = TaskRun.objects.get(task_id=task_id)
    assert row.args is None  # over the decoder's 1 MiB the field is left out on decode
    if count == 100_000:  # within what the decoder takes: cut at ingest, kwargs with it
        assert row.kwargs is None
        assert row.args_dropped.startswith(f"too large: {2 * count + 3} bytes")  # and "{}"

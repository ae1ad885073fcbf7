"""Forged events of other attempts, XADDed beside the real ones and processed by a real monitor:
a succeeded task keeps its start, finish, runtime and worker, whatever attempt a forged start,
success or retry names and whichever order they arrive in; an attempt's error is its first
failure's; attempt numbers over the cap are dead-lettered; each forgery is a recorded conflict."""

from __future__ import annotations

import time

import pytest
from django.conf import settings

from dashboard.ingest.bounds import MAX_ATTEMPT
from dashboard.ingest.monitor import Monitor
from dashboard.ingest.stream import StreamConsumer
from dashboard.models import TaskAttempt, TaskRun
from tasktrail.events import encode_batch
from tests.conftest import event, new_task_id

pytestmark = pytest.mark.django_db(transaction=True)

NAME = "shop.send_invoice"
TIMING = ("state", "retries", "started_at", "finished_at", "runtime", "worker", "queue_wait")


def drain(redis_client) -> None:
    Monitor(StreamConsumer(redis_client, settings.TASKTRAIL_STREAM, consumer="forged")).run(
        drain=True
    )


def xadd(redis_client, *events) -> None:
    redis_client.xadd(settings.TASKTRAIL_STREAM, encode_batch(list(events)))


def real_success(task_id: str, t0: float) -> list[dict]:
    return [
        event("published", task_id, t0, name=NAME, queue="default", args="[1]", kwargs="{}",
              retries=0, published_at=t0),
        event("received", task_id, t0 + 0.5, name=NAME, queue="default", args="[1]", kwargs="{}",
              retries=0, hostname="w1@host"),
        event("started", task_id, t0 + 1, name=NAME, retries=0, hostname="w1@host",
              queue_wait=0.5),
        event("succeeded", task_id, t0 + 2, name=NAME, retries=0, hostname="w1@host",
              runtime=1.0),
    ]  # fmt: skip


def timing(task_id: str) -> tuple:
    return TaskRun.objects.filter(task_id=task_id).values_list(*TIMING).get()


def conflict(task_id: str) -> tuple[str | None, str | None]:
    row = TaskRun.objects.get(task_id=task_id)
    return row.identity_conflict_field, row.identity_conflict


def write_in_order(redis_client, real: list[dict], forged: list[dict], order: str) -> None:
    """``before``: the forgeries arrive while the task runs (before its success), ``after``: once
    it succeeded, ``together``: in one entry with the real events."""
    if order == "together":
        xadd(redis_client, *real, *forged)
    elif order == "before":
        xadd(redis_client, *real[:-1])
        drain(redis_client)
        xadd(redis_client, *forged)
        drain(redis_client)
        xadd(redis_client, real[-1])
    else:
        xadd(redis_client, *real)
        drain(redis_client)
        xadd(redis_client, *forged)
    drain(redis_client)


ORDERS = ["after", "before", "together"]


@pytest.mark.parametrize("order", ORDERS)
def test_a_forged_later_start_leaves_a_succeeded_tasks_timing(redis_client, order):
    t0 = time.time() - 60
    reference, task_id = new_task_id(), new_task_id()
    xadd(redis_client, *real_success(reference, t0))
    drain(redis_client)
    forged = [
        event("started", task_id, t0 + 30, name=NAME, retries=99, hostname="evil@host",
              queue_wait=29.0),
        event("started", task_id, t0 + 31, name=NAME, retries=7, hostname="evil@host"),
    ]  # fmt: skip
    write_in_order(redis_client, real_success(task_id, t0), forged, order)
    assert timing(task_id) == timing(reference)
    assert timing(task_id)[:2] == ("SUCCESS", 0)
    assert conflict(task_id) == ("state", "STARTED (retries 99)")


@pytest.mark.parametrize("order", ["after", "together"])
def test_a_forged_success_of_another_attempt_changes_no_timing(redis_client, order):
    """The first SUCCESS the monitor received is the task's; a forged one arriving later (or in
    the same entry, after it) is a conflict."""
    t0 = time.time() - 60
    reference, task_id = new_task_id(), new_task_id()
    xadd(redis_client, *real_success(reference, t0))
    drain(redis_client)
    forged = [
        event("succeeded", task_id, t0 + 40, name=NAME, retries=5, hostname="evil@host",
              runtime=39.0),
    ]  # fmt: skip
    write_in_order(redis_client, real_success(task_id, t0), forged, order)
    assert timing(task_id) == timing(reference)
    assert conflict(task_id) == ("state", "SUCCESS (retries 5)")


@pytest.mark.parametrize("order", ORDERS)
def test_a_forged_retry_after_a_success_is_a_conflict(redis_client, order):
    t0 = time.time() - 60
    task_id = new_task_id()
    forged = [
        event("retried", task_id, t0 + 5, name=NAME, retries=0, hostname="evil@host",
              exc_type="Retry", exc_message="again"),
    ]  # fmt: skip
    write_in_order(redis_client, real_success(task_id, t0), forged, order)
    row = TaskRun.objects.get(task_id=task_id)
    assert (row.state, row.retries, row.worker, row.exc_type) == ("SUCCESS", 0, "w1@host", None)
    assert conflict(task_id) == ("state", "RETRY (retries 1)")


def test_a_retry_before_the_successful_attempt_is_no_conflict(redis_client):
    t0 = time.time() - 60
    task_id = new_task_id()
    xadd(
        redis_client,
        event("started", task_id, t0, name=NAME, retries=0, hostname="w1@host"),
        event("retried", task_id, t0 + 1, name=NAME, retries=0, hostname="w1@host"),
        event("published", task_id, t0 + 1, name=NAME, queue="default", args="[1]",
              kwargs="{}", retries=1, published_at=t0 + 1),
        event("started", task_id, t0 + 2, name=NAME, retries=1, hostname="w2@host"),
        event("succeeded", task_id, t0 + 3, name=NAME, retries=1, hostname="w2@host",
              runtime=1.0),
    )  # fmt: skip
    drain(redis_client)
    row = TaskRun.objects.get(task_id=task_id)
    assert (row.state, row.retries, row.worker) == ("SUCCESS", 1, "w2@host")
    assert row.started_at.timestamp() == pytest.approx(t0 + 2)
    assert row.identity_conflict_key is None


@pytest.mark.parametrize("order", ["first", "second"])
def test_an_attempts_error_is_its_first_failures(redis_client, order):
    """A forged failure of the same attempt, received after the real one, replaces neither the
    task's error nor the attempt's error, message or traceback."""
    t0 = time.time() - 60
    task_id = new_task_id()
    real = event("failed", task_id, t0 + 1, name=NAME, retries=0, hostname="w1@host",
                 exc_type="SMTPError", exc_message="mail server down", traceback="Traceback: real",
                 runtime=0.5)  # fmt: skip
    forged = event("failed", task_id, t0 + 9, name=NAME, retries=0, hostname="w1@host",
                   exc_type="ZForged", exc_message="zz run me again", traceback="zz forged",
                   runtime=9.0)  # fmt: skip
    xadd(redis_client, event("published", task_id, t0, name=NAME, queue="default", args="[1]",
                             kwargs="{}", retries=0, published_at=t0))  # fmt: skip
    if order == "first":  # two entries, the real one received first
        xadd(redis_client, real)
        drain(redis_client)
        xadd(redis_client, forged)
    else:  # one entry: the same receive time, so the tie goes by the values' hash: still one
        xadd(redis_client, real, forged)
    drain(redis_client)
    row = TaskRun.objects.get(task_id=task_id)
    attempt = TaskAttempt.objects.get(task_id=task_id, attempt=0)
    said = (row.exc_type, row.exc_message, attempt.exc_type, attempt.exc_message,
            attempt.traceback, attempt.runtime)  # fmt: skip
    if order == "first":
        assert said == ("SMTPError", "mail server down", "SMTPError", "mail server down",
                        "Traceback: real", 0.5)  # fmt: skip
    else:  # never a mix of the two events' columns
        assert said[2:] in (
            ("SMTPError", "mail server down", "Traceback: real", 0.5),
            ("ZForged", "zz run me again", "zz forged", 9.0),
        )
        assert said[:2] == said[2:4]
    # delivered again (a new entry): nothing changes
    xadd(redis_client, forged)
    drain(redis_client)
    again = TaskAttempt.objects.get(task_id=task_id, attempt=0)
    assert (again.exc_type, again.exc_message, again.traceback) == said[2:5]


def test_attempts_over_the_cap_are_dead_lettered(redis_client):
    t0 = time.time() - 60
    task_id = new_task_id()
    xadd(
        redis_client,
        *real_success(task_id, t0),
        event("started", task_id, t0 + 5, name=NAME, retries=MAX_ATTEMPT, hostname="evil@host"),
        event("failed", task_id, t0 + 6, name=NAME, retries=MAX_ATTEMPT + 1, exc_type="E"),
        event("started", task_id, t0 + 6, name=NAME, retries=2**31 - 1, hostname="evil@host"),
    )
    drain(redis_client)
    assert sorted(
        TaskAttempt.objects.filter(task_id=task_id).values_list("attempt", flat=True)
    ) == [
        0,
        MAX_ATTEMPT,
    ]
    dead = redis_client.xrange(f"{settings.TASKTRAIL_STREAM}:dead")
    reasons = [fields[b"reason"].decode() for _, fields in dead]
    assert any(r.startswith(f"attempt over {MAX_ATTEMPT}") for r in reasons), reasons
    counted = [f for _, f in dead if f[b"reason"].startswith(b"attempt over")]
    assert counted[-1][b"count"] == b"2"
    row = TaskRun.objects.get(task_id=task_id)
    assert (row.state, row.retries) == ("SUCCESS", 0)
    assert row.started_at.timestamp() == pytest.approx(t0 + 1)
    assert conflict(task_id) == ("state", f"STARTED (retries {MAX_ATTEMPT})")


def test_successes_stored_before_the_first_success_band_outrank_later_ones(redis_client):
    """The migration gives a success stored with the old key the earliest receive time: a forged
    success of another attempt that arrives after the upgrade does not replace it."""
    import importlib

    from django.db import connection

    from dashboard.ingest import merge

    migration = importlib.import_module("dashboard.migrations.0014_identity_conflict_clear")
    t0 = time.time() - 60
    task_id = new_task_id()
    xadd(redis_client, *real_success(task_id, t0))
    drain(redis_client)
    old = merge.SUCCESS_BAND | (0 << 8) | merge.TERMINAL_ORDER[merge.SUCCESS]  # attempt 0
    TaskRun.objects.filter(task_id=task_id).update(state_key=old, worker_key=old, error_key=old)
    before = timing(task_id)
    with connection.cursor() as cursor:
        for sql in migration._success_keys(
            migration._new, migration._OLD_BAND, migration._NEW_BAND
        ):
            cursor.execute(sql)
    row = TaskRun.objects.get(task_id=task_id)
    assert row.state_key >= merge.FIRST_SUCCESS_BAND
    assert merge.attempt_of_key(row.state_key) == 0
    assert row.worker_key == row.error_key == row.state_key
    xadd(
        redis_client,
        event("succeeded", task_id, t0 + 40, name=NAME, retries=5, hostname="evil@host",
              runtime=39.0),
    )  # fmt: skip
    drain(redis_client)
    assert timing(task_id) == before
    assert conflict(task_id) == ("state", "SUCCESS (retries 5)")
    with connection.cursor() as cursor:  # and back
        for sql in migration._success_keys(migration._old, migration._NEW_BAND, 1 << 62):
            cursor.execute(sql)
    assert TaskRun.objects.get(task_id=task_id).state_key == old

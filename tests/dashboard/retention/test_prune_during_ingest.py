"""Pruning beside a real monitor process: no event is lost, no row that should stay goes, and
the monitor's own pruning thread removes old rows and leaves its figures for the page."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.utils import timezone

from dashboard import redis_keys
from dashboard.models import TaskAttempt, TaskRun
from dashboard.retention.policy import RetentionPolicy
from dashboard.retention.pruner import PruneReport, prune_pass
from tasktrail.events import encode_batch
from tests.conftest import new_task_id, story_retry_then_fail, story_success
from tests.dashboard.retention import rows
from tests.dashboard.retention.rows import task
from tests.integration.conftest import database_url_for_children
from tests.processes import Child, spawn

pytestmark = pytest.mark.django_db(transaction=True)

DEADLINE = 120.0
OLD_TASKS = 600
NEW_TASKS = 600


@pytest.fixture(autouse=True)
def _rows_aged_from_now(monkeypatch) -> None:
    monkeypatch.setattr(rows, "NOW", timezone.now())


def monitor_env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "REDIS_URL": settings.REDIS_URL,
        "DATABASE_URL": database_url_for_children(),
        "TASKTRAIL_STREAM": settings.TASKTRAIL_STREAM,
        **extra,
    }


@pytest.fixture
def monitor(redis_client) -> Iterator[Child]:
    child = spawn(
        [sys.executable, "manage.py", "monitor", "--consumer", "itest-prune", "--no-alerts",
         "--no-prune"],
        monitor_env(),
    )  # fmt: skip
    try:
        child.output.wait_for("reading", 60)
        yield child
    finally:
        child.stop(signal.SIGTERM)


def wait_until(condition, what: str, child: Child) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert child.process.poll() is None, child.output.text
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{child.output.tail()}"
        time.sleep(0.1)


def old_rows() -> tuple[set[str], set[str]]:
    """Rows the pass removes, and rows of the same age it must keep (failures: 30 days)."""
    old = {
        task("SUCCESS", finished=20 + n / 1000, attempts=2, prefix="old") for n in range(OLD_TASKS)
    }
    kept = {task("FAILURE", finished=20, attempts=2, prefix="kept") for _ in range(50)}
    kept |= {task("STARTED", updated=2, prefix="kept") for _ in range(20)}
    return old, kept


def test_a_pass_while_the_monitor_writes_loses_no_event_and_no_kept_row(redis_client, monitor):
    old, kept = old_rows()
    reports: list[PruneReport] = []
    errors: list[BaseException] = []
    new_ok = [new_task_id() for _ in range(NEW_TASKS)]
    new_failed = [new_task_id() for _ in range(NEW_TASKS)]
    new_ids = new_ok + new_failed
    written: list[int] = []  # new rows already written, at the pass's batch boundaries

    def between_batches() -> bool:
        written.append(TaskRun.objects.filter(task_id__in=new_ids).count())
        return True

    def prune() -> None:  # small batches, so the pass and the writes interleave
        try:
            while True:
                report = prune_pass(
                    RetentionPolicy(),
                    now=timezone.now(),
                    batch_size=10,
                    keep_going=between_batches,
                )
                reports.append(report)
                if report.removed["TaskRun"] == 0:
                    return
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            from django.db import connection

            connection.close()

    pruner = threading.Thread(target=prune)
    pruner.start()
    now = time.time()
    for n, (ok, failed) in enumerate(zip(new_ok, new_failed, strict=True)):
        events = story_success(ok, now + n * 0.001) + story_retry_then_fail(failed, now)
        redis_client.xadd(settings.TASKTRAIL_STREAM, encode_batch(events))
    pruner.join(DEADLINE)
    assert not pruner.is_alive() and not errors, errors
    wait_until(
        lambda: (
            TaskRun.objects.filter(task_id__in=new_ok, state="SUCCESS").count() == NEW_TASKS
            and TaskRun.objects.filter(task_id__in=new_failed, state="FAILURE").count() == NEW_TASKS
        ),
        "every new task's row",
        monitor,
    )
    ids = set(TaskRun.objects.values_list("task_id", flat=True))
    assert ids == kept | set(new_ok) | set(new_failed)
    assert sum(r.removed["TaskRun"] for r in reports) == OLD_TASKS
    assert sum(r.batches for r in reports) >= OLD_TASKS // 10
    # the pass and the ingest overlapped: between two of its batches some new rows were written,
    # not all
    assert any(0 < count < len(new_ids) for count in written), written
    # every attempt of the new tasks arrived (one each for a success, two for a retried failure)
    assert TaskAttempt.objects.filter(task_id__in=new_ok).count() == NEW_TASKS
    assert TaskAttempt.objects.filter(task_id__in=new_failed).count() == 2 * NEW_TASKS
    assert not TaskAttempt.objects.filter(task_id__in=old).exists()
    assert TaskAttempt.objects.filter(task_id__in=kept).count() == 50 * 2 + 20


def test_the_monitor_prunes_by_itself_and_keeps_its_figures(redis_client):
    old, kept = old_rows()
    child = spawn(
        [sys.executable, "manage.py", "monitor", "--consumer", "itest-prune-thread", "--no-alerts"],
        monitor_env(TASKTRAIL_PRUNE_EVERY_SECONDS="1"),
    )
    try:
        key = redis_keys.prune_last(settings.TASKTRAIL_STREAM)
        wait_until(lambda: not TaskRun.objects.filter(task_id__in=old).exists(), "pruning", child)
        wait_until(lambda: redis_client.get(key) is not None, "figures", child)
        task_id = new_task_id()
        redis_client.xadd(
            settings.TASKTRAIL_STREAM, encode_batch(story_success(task_id, time.time()))
        )
        wait_until(lambda: TaskRun.objects.filter(task_id=task_id).exists(), "a new row", child)
    finally:
        assert child.stop(signal.SIGTERM) == 0, child.output.text
    assert set(TaskRun.objects.values_list("task_id", flat=True)) == kept | {task_id}
    figures = json.loads(redis_client.get(key))
    assert figures["next_run_at"] and figures["errors"] == []
    assert "retention: removed" in child.output.text

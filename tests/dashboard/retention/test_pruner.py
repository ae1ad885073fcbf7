"""prune_pass keeps exactly what the policy says, per state and age, and takes each task's
attempts and result with it."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django_celery_results.models import TaskResult

from dashboard.models import (
    AlertIncident,
    OperatorAction,
    OperatorActionTarget,
    TaskAttempt,
    TaskRun,
)
from dashboard.retention.policy import RetentionPolicy
from dashboard.retention.pruner import TABLES, prune_pass
from tests.dashboard.retention.rows import NOW, audit, incident, task

pytestmark = pytest.mark.django_db(transaction=True)

DAY = dt.timedelta(days=1)
POLICY = RetentionPolicy(finished_days=14, failed_days=30, unfinished_days=30, audit_days=400)


def task_ids() -> set[str]:
    return set(TaskRun.objects.values_list("task_id", flat=True))


def test_each_state_is_kept_for_its_own_days():
    keep = {
        task("SUCCESS", finished=13.9),
        task("FAILURE", finished=29.9),
        task("FAILURE", finished=15),
        task("REVOKED", finished=20),
        task("REJECTED", finished=29),
        task("LOST", updated=29),
        task("STARTED", updated=100 - 71, first_seen=100),  # seen long ago, alive lately
        task("PENDING", updated=45, eta=-3),  # scheduled for later
        task("RETRY", updated=29.5),
        task("RECEIVED", updated=1),
    }
    gone = {
        task("SUCCESS", finished=14.1),
        task("SUCCESS", finished=400),
        task("SUCCESS", updated=15),  # no finish time: aged by its latest event
        task("FAILURE", finished=30.1),
        task("REVOKED", finished=31),
        task("REJECTED", finished=60),
        task("LOST", updated=31),
        task("PENDING", updated=31),
        task("STARTED", updated=40),
        task("RETRY", updated=31, eta=30.5),
        task("RECEIVED", updated=90),
    }
    report = prune_pass(POLICY, now=NOW, batch_size=3)
    assert task_ids() == keep
    assert report.removed["TaskRun"] == len(gone)
    assert report.complete and not report.errors
    # attempts and results went with their task, the kept ones stayed
    assert set(TaskAttempt.objects.values_list("task_id", flat=True)) == keep
    assert set(TaskResult.objects.values_list("task_id", flat=True)) == keep
    assert report.removed["TaskAttempt"] == len(gone)
    assert report.removed["TaskResult"] == len(gone)


def test_every_attempt_of_a_task_goes_with_it():
    old = task("FAILURE", finished=40, attempts=4)
    young = task("FAILURE", finished=10, attempts=4)
    report = prune_pass(POLICY, now=NOW, batch_size=1)
    assert set(TaskAttempt.objects.values_list("task_id", flat=True)) == {young}
    assert TaskAttempt.objects.count() == 4
    assert report.removed["TaskAttempt"] == 4
    assert not TaskRun.objects.filter(task_id=old).exists()


def test_zero_days_keeps_that_kind_forever():
    kept = {task("SUCCESS", finished=9000), task("PENDING", updated=9000)}
    gone = task("FAILURE", finished=9000)
    policy = RetentionPolicy(finished_days=0, failed_days=30, unfinished_days=0, audit_days=0)
    old_action = audit(9000)
    old_incident = incident(9001, 9000)
    prune_pass(policy, now=NOW)
    assert task_ids() == kept
    assert gone not in task_ids()
    assert OperatorAction.objects.filter(pk=old_action).exists()
    assert AlertIncident.objects.filter(pk=old_incident).exists()


def test_audit_rows_and_resolved_incidents_go_by_their_own_age():
    old_action, young_action = audit(401, targets=3), audit(399, targets=2)
    old_resolved = incident(500, 401)
    young_resolved = incident(500, 399)  # opened long ago, resolved lately
    ancient_open = incident(5000, None)  # open incidents are never pruned
    report = prune_pass(POLICY, now=NOW, batch_size=1)
    assert set(OperatorAction.objects.values_list("pk", flat=True)) == {young_action}
    assert set(OperatorActionTarget.objects.values_list("action_id", flat=True)) == {young_action}
    assert set(AlertIncident.objects.values_list("pk", flat=True)) == {
        young_resolved,
        ancient_open,
    }
    assert not OperatorAction.objects.filter(pk=old_action).exists()
    assert not AlertIncident.objects.filter(pk=old_resolved).exists()
    assert report.removed["OperatorAction"] == 1
    assert report.removed["OperatorActionTarget"] == 3
    assert report.removed["AlertIncident"] == 1


def test_a_result_without_a_task_goes_at_the_longer_task_cutoff():
    for task_id, days in (("orphan-old", 31), ("orphan-young", 29)):
        TaskResult.objects.create(task_id=task_id, status="SUCCESS")
        TaskResult.objects.filter(task_id=task_id).update(date_done=NOW - days * DAY)  # auto_now
    report = prune_pass(POLICY, now=NOW)
    assert set(TaskResult.objects.values_list("task_id", flat=True)) == {"orphan-young"}
    assert report.removed["TaskResult"] == 1


def test_dry_run_counts_what_a_pass_removes_and_changes_nothing():
    for days in (15, 16, 17):
        task("SUCCESS", finished=days, attempts=2)
    task("SUCCESS", finished=1)
    audit(500, targets=4)
    incident(600, 500)
    before = {t: n for t, n in _counts().items()}
    dry = prune_pass(POLICY, now=NOW, dry_run=True)
    assert _counts() == before
    assert dry.dry_run
    real = prune_pass(POLICY, now=NOW)
    assert dry.removed == real.removed
    assert dry.removed == {
        "TaskRun": 3,
        "TaskAttempt": 6,
        "TaskResult": 3,
        "OperatorAction": 1,
        "OperatorActionTarget": 4,
        "AlertIncident": 1,
    }
    assert not any(dry.capped.values())


def test_dry_run_count_stops_at_the_cap_and_says_so():
    for days in range(15, 22):
        task("SUCCESS", finished=days)
    dry = prune_pass(POLICY, now=NOW, dry_run=True, dry_run_cap=5)
    assert dry.removed["TaskRun"] == 5
    assert dry.capped["TaskRun"]
    assert TaskRun.objects.count() == 7


def test_a_pass_past_its_deadline_stops_between_batches_and_the_next_goes_on():
    for days in range(15, 25):
        task("SUCCESS", finished=days)
    stopped = prune_pass(POLICY, now=NOW, batch_size=2, deadline=time.monotonic() - 1)
    assert not stopped.complete and stopped.stopped == "deadline"
    assert TaskRun.objects.count() == 10  # nothing begun
    calls = iter([True, True, False])
    lost = prune_pass(POLICY, now=NOW, batch_size=2, keep_going=lambda: next(calls, False))
    assert lost.stopped == "lease lost"
    assert lost.removed["TaskRun"] == 4  # two whole batches
    assert TaskRun.objects.count() == 6
    rest = prune_pass(POLICY, now=NOW, batch_size=2)
    assert rest.complete and TaskRun.objects.count() == 0


def _counts() -> dict[str, int]:
    models = (TaskRun, TaskAttempt, TaskResult, OperatorAction, OperatorActionTarget, AlertIncident)
    return {name: model.objects.count() for name, model in zip(TABLES, models, strict=True)}

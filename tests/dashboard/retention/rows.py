"""Rows of every kind at a chosen age, written straight to the tables the pruner reads."""

from __future__ import annotations

import datetime as dt
import itertools

from django_celery_results.models import TaskResult

from dashboard.models import (
    AlertIncident,
    OperatorAction,
    OperatorActionTarget,
    TaskAttempt,
    TaskRun,
)

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
_ids = itertools.count(1)


def days_ago(days: float) -> dt.datetime:
    return NOW - dt.timedelta(days=days)


def task(
    state: str,
    *,
    finished: float | None = None,
    updated: float | None = None,
    first_seen: float | None = None,
    eta: float | None = None,
    attempts: int = 1,
    result: bool = True,
    prefix: str = "t",
) -> str:
    """A task in ``state`` that finished ``finished`` days ago (None: no finish time), with its
    attempts and django-celery-results row."""
    task_id = f"{prefix}-{state}-{next(_ids)}"
    finished_at = days_ago(finished) if finished is not None else None
    updated_at = days_ago(updated) if updated is not None else (finished_at or NOW)
    first_seen_at = days_ago(first_seen) if first_seen is not None else updated_at
    TaskRun.objects.create(
        task_id=task_id,
        name="shop.job",
        state=state,
        first_seen_at=min(first_seen_at, updated_at),
        updated_at=updated_at,
        finished_at=finished_at,
        eta=days_ago(eta) if eta is not None else None,
    )
    for n in range(attempts):
        TaskAttempt.objects.create(task_id=task_id, attempt=n, outcome=state)
    if result:
        TaskResult.objects.create(task_id=task_id, status=state)
        TaskResult.objects.filter(task_id=task_id).update(date_done=updated_at)  # auto_now
    return task_id


def audit(days: float, targets: int = 2) -> int:
    action = OperatorAction.objects.create(
        username="ops", kind="retry", reason="old", outcome="done", target_count=targets
    )
    OperatorAction.objects.filter(pk=action.pk).update(at=days_ago(days))  # auto_now_add
    for n in range(targets):
        OperatorActionTarget.objects.create(action=action, task_id=f"x-{n}", outcome="done")
    return action.pk


def incident(opened: float, resolved: float | None) -> int:
    row = AlertIncident.objects.create(
        rule="queue_stuck",
        subject=f"q-{next(_ids)}",
        summary="stuck",
        opened_at=days_ago(opened),
        checked_at=days_ago(resolved if resolved is not None else 0),
        resolved_at=days_ago(resolved) if resolved is not None else None,
    )
    return row.pk

"""Write one batch of events: fold per task, then two upserts in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction

from dashboard.ingest.merge import ATTEMPT_RULES, TASK_RULES, Event, fold
from dashboard.ingest.upsert import upsert
from dashboard.models import TaskAttempt, TaskRun


@dataclass(frozen=True)
class Written:
    events: int
    tasks: int
    attempts: int


def write_events(events: Sequence[Event]) -> Written:
    """Join ``events`` into the task and attempt rows. Raises the database's errors unchanged."""
    folded = fold(events)
    task_rows = [{"task_id": task_id, **patch} for task_id, patch in folded.tasks.items()]
    attempt_rows = list(folded.attempts.values())
    with transaction.atomic():
        upsert(TaskRun, TASK_RULES, ("task_id",), task_rows)
        upsert(TaskAttempt, ATTEMPT_RULES, ("task_id", "attempt"), attempt_rows)
    return Written(events=len(events), tasks=len(task_rows), attempts=len(attempt_rows))

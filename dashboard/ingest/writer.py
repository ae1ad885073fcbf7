"""Write one batch of events: fold per task, then two upserts in one transaction (and, for a
succeeded task that holds a later attempt's start, the settling UPDATE: ``merge.settle``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction

from dashboard.ingest.merge import ATTEMPT_RULES, TASK_RULES, Event, fold
from dashboard.ingest.upsert import settle_flag, settle_starts, upsert
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
    unsettled: list[str] = []  # succeeded tasks holding a later attempt's start (merge.settle)
    with transaction.atomic():
        upsert(TaskRun, TASK_RULES, ("task_id",), task_rows, flag=settle_flag(), flagged=unsettled)
        upsert(TaskAttempt, ATTEMPT_RULES, ("task_id", "attempt"), attempt_rows)
        if unsettled:  # after the attempts: it reads them
            settle_starts(TaskRun, TaskAttempt, unsettled)
    return Written(events=len(events), tasks=len(task_rows), attempts=len(attempt_rows))

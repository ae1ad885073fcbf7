"""Tasks of a worker that is gone: the alert checks decide, this writes the rows."""

from __future__ import annotations

from dashboard.models import TaskRun, TaskState


def mark_lost(worker: str) -> int:
    """The worker's STARTED tasks become LOST (retryable). Any later event of a task outranks it."""
    return TaskRun.objects.filter(worker=worker, state=TaskState.STARTED).update(
        state=TaskState.LOST
    )

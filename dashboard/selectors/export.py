"""Rows for the CSV export: the tasks the list shows for a filter, newest first, read in chunks."""

from __future__ import annotations

from collections.abc import Iterator

from dashboard.filters import TaskFilter
from dashboard.models import TaskRun
from dashboard.selectors.tasks import filtered_task_runs

EXPORT_FIELDS = (
    "id", "task_id", "name", "state", "queue", "input_id", "retries", "worker", "first_seen_at",
    "published_at", "started_at", "finished_at", "runtime", "queue_wait", "exc_type",
    "exc_message", "retry_of", "retried_as", "trace_id", "args", "kwargs", "arg_names",
    "args_dropped",
)  # fmt: skip
CHUNK_SIZE = 2000  # rows per fetch: a server-side cursor on PostgreSQL, so memory stays flat


def export_task_runs(*, task_filter: TaskFilter, limit: int) -> Iterator[TaskRun]:
    """Up to ``limit + 1`` rows in the list's order: one more than ``limit`` means a cut export.

    The list's own filter (``filtered_task_runs``), so the file holds what the page showed."""
    qs = (
        filtered_task_runs(task_filter)
        .only(*EXPORT_FIELDS)
        .order_by("-first_seen_at", "-id")[: limit + 1]
    )
    return qs.iterator(chunk_size=CHUNK_SIZE)

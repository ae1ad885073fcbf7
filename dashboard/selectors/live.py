"""What a Tasks list open in a browser needs next: rows that are new, and rows that changed."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from django.utils import timezone

from dashboard.filters import TaskFilter
from dashboard.models import RETRYABLE_STATES, TaskRun
from dashboard.pagination import Cursor
from dashboard.selectors.tasks import LIST_FIELDS, task_list

# Worker events can be written before the publish event that names the task. A nameless row waits
# this long for its name before it is shown anyway, so a lost publish event cannot hold the list.
NAMELESS_GRACE = dt.timedelta(seconds=30)
MAX_SEEN = 200  # rows a poll may ask about: a page plus what arrived while it was open

# What a row shows: a change in any of these redraws it.
VERSION_FIELDS = (
    "name", "queue", "input_id", "state", "retries", "exc_type", "exc_message", "published_at",
    "first_seen_at", "started_at", "finished_at", "runtime", "worker", "trace_id", "retry_of",
    "retried_as",
)  # fmt: skip


def row_version(task: TaskRun) -> str:
    """A short digest of what the row shows; "" for a row that can no longer change."""
    settled = (
        task.is_finished
        and task.name
        and not (task.state in RETRYABLE_STATES and not task.retried_as)
    )
    if settled:
        return ""
    shown = "\x1f".join(str(getattr(task, field)) for field in VERSION_FIELDS)
    return hashlib.blake2b(shown.encode(), digest_size=6).hexdigest()


@dataclass(frozen=True)
class LiveUpdate:
    new_rows: list[TaskRun]  # newest first, each with its name (or past the grace period)
    newest: Cursor  # where the next poll starts: the newest row shown, not the newest written
    changed_rows: list[TaskRun]  # rows the browser has in another version


def live_rows(
    *,
    task_filter: TaskFilter,
    newer_than: Cursor,
    seen: dict[int, str],
    now: dt.datetime | None = None,
) -> LiveUpdate:
    now = now or timezone.now()
    oldest_first = task_list(task_filter=task_filter, newer_than=newer_than).rows[::-1]
    shown: list[TaskRun] = []
    for row in oldest_first:
        if not row.name and row.first_seen_at > now - NAMELESS_GRACE:
            break  # it and the rows after it wait, so the cursor never skips it
        shown.append(row)
    newest = Cursor(shown[-1].first_seen_at, shown[-1].id) if shown else newer_than
    changed: list[TaskRun] = []
    if seen:
        ids = sorted(seen)[:MAX_SEEN]
        rows = TaskRun.objects.filter(id__in=ids).only(*LIST_FIELDS)
        changed = sorted(
            (r for r in rows if row_version(r) != seen[r.id]),
            key=lambda r: (r.first_seen_at, r.id),
            reverse=True,
        )
    return LiveUpdate(new_rows=shown[::-1], newest=newest, changed_rows=changed)

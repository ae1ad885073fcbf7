"""Task rows: filtered, keyset-paginated lists; one task with its story; per-type statistics."""

from __future__ import annotations

import datetime as dt
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Q, QuerySet

from dashboard import redis_keys
from dashboard.filters import TASK_ID_PREFIX_MIN, TaskFilter, is_trace_id
from dashboard.models import TaskAttempt, TaskRun, TaskState
from dashboard.pagination import Cursor
from dashboard.redis_client import shared_client
from dashboard.selectors.alerts import (
    DEFAULT_CHECK_SECONDS,
    STALE_AFTER_CHECKS,
    STALE_GRACE_SECONDS,
)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
LIST_FIELDS = (
    "id", "task_id", "name", "queue", "input_id", "state", "retries", "exc_type", "exc_message",
    "first_seen_at", "published_at", "started_at", "finished_at", "runtime", "queue_wait",
    "worker", "trace_id", "trace_sampled", "updated_at", "retry_of", "retried_as",
)  # fmt: skip


def filtered_task_runs(task_filter: TaskFilter) -> QuerySet[TaskRun]:
    qs = TaskRun.objects.all()
    if task_filter.states:
        qs = qs.filter(state__in=task_filter.states)
    if task_filter.name:
        qs = qs.filter(name__in=task_names_matching(task_filter.name))
    if task_filter.queue:
        qs = qs.filter(queue=task_filter.queue)
    if task_filter.worker:
        qs = qs.filter(worker=task_filter.worker)
    if task_filter.since:
        qs = qs.filter(first_seen_at__gte=task_filter.since)
    if task_filter.until:
        qs = qs.filter(first_seen_at__lt=task_filter.until)
    if task_filter.q:
        qs = qs.filter(search_match(task_filter.search_terms))
    return qs


def search_match(terms: Sequence[str]) -> Q:
    """Rows a pasted search means: per term, an input id by its beginning, a task id exactly or by
    its first TASK_ID_PREFIX_MIN or more characters, or a trace id. Each is a seek on an index of
    its own column; "any case" is the term as typed, lower and upper case (no case-folded index)."""
    match = Q(pk__in=[])  # no terms: no rows
    for term in terms:
        for input_id in dict.fromkeys([term, term.lower(), term.upper()]):
            match |= _prefix("input_id", input_id)
        for task_id in dict.fromkeys([term, term.lower()]):
            is_prefix = len(task_id) >= TASK_ID_PREFIX_MIN
            match |= _prefix("task_id", task_id) if is_prefix else Q(task_id=task_id)
        if is_trace_id(term):
            match |= Q(trace_id=term.lower())
    return match


def _prefix(column: str, prefix: str) -> Q:
    """``column`` starts with ``prefix``, in a form the column's index can seek to.

    PostgreSQL: LIKE 'prefix%', served by the varchar_pattern_ops indexes (whatever the database
    collation). SQLite: its LIKE ignores case and so never uses an index on a BINARY column; a
    half-open range in code point order does, and is exact for the BINARY collation."""
    if connection.vendor != "sqlite":
        return Q(**{f"{column}__startswith": prefix})
    last = ord(prefix[-1])
    if last == sys.maxunicode:
        return Q(**{f"{column}__startswith": prefix})  # no next code point: rare, so unindexed
    upper = prefix[:-1] + chr(last + 1)
    return Q(**{f"{column}__gte": prefix, f"{column}__lt": upper})


KNOWN_NAMES_LIMIT = 500


def known_task_names(*, limit: int = KNOWN_NAMES_LIMIT) -> list[str]:
    """Distinct recorded task names in order, at most ``limit``: one seek on the name index per
    name (a recursive "next name after this one"), never a scan of every row."""
    table = TaskRun._meta.db_table
    sql = f"""
        WITH RECURSIVE names(name, n) AS (
            SELECT (SELECT name FROM {table} WHERE name IS NOT NULL ORDER BY name LIMIT 1), 1
            UNION ALL
            SELECT (SELECT t.name FROM {table} t WHERE t.name > names.name
                    ORDER BY t.name LIMIT 1), names.n + 1
            FROM names WHERE names.name IS NOT NULL AND names.n < %s
        )
        SELECT name FROM names WHERE name IS NOT NULL
    """  # noqa: S608 - the table name is the model's, the limit a parameter
    with connection.cursor() as cursor:
        cursor.execute(sql, [limit])
        return [row[0] for row in cursor.fetchall()]


NAME_PREFIX_CACHE_KEY = "tasktrail:task-name-prefix"
NAME_PREFIX_CACHE_SECONDS = 60  # a new module of tasks shows in full names for at most a minute


def task_name_prefix() -> str:
    """The module path every recorded task name shares (``"workers.tasks."``), which the list
    leaves out so each name reads in full; empty when the names share none. The same on a page
    and on its polls, since it depends on the names recorded, not on the rows shown."""
    prefix = cache.get(NAME_PREFIX_CACHE_KEY)
    if prefix is None:
        modules = [name.split(".")[:-1] for name in known_task_names()]
        common = modules[0] if modules else []
        for parts in modules[1:]:
            same = 0
            while same < min(len(common), len(parts)) and common[same] == parts[same]:
                same += 1
            common = common[:same]
        prefix = ".".join(common) + "." if common else ""
        cache.set(NAME_PREFIX_CACHE_KEY, prefix, NAME_PREFIX_CACHE_SECONDS)
    return str(prefix)


def task_names_matching(fragment: str) -> list[str]:
    """The names a Task name filter means: the text itself, and every known name containing it in
    any case ("send_invoice" -> "workers.tasks.send_invoice")."""
    folded = fragment.casefold()
    return [fragment, *(n for n in known_task_names() if folded in n.casefold() and n != fragment)]


@dataclass(frozen=True)
class TaskPage:
    rows: list[TaskRun]
    next_cursor: Cursor | None
    newest: Cursor | None  # the first row: what "new rows since" polls start from


def task_list(
    *,
    task_filter: TaskFilter,
    cursor: Cursor | None = None,
    newer_than: Cursor | None = None,
    limit: int = DEFAULT_PAGE_SIZE,
) -> TaskPage:
    """A page of rows, newest first. ``cursor``: rows after it; ``newer_than``: rows before it."""
    limit = max(1, min(limit, MAX_PAGE_SIZE))
    qs = filtered_task_runs(task_filter).only(*LIST_FIELDS)
    if cursor is not None:
        # a range the (first_seen_at, id) index can seek to, then the tie on equal timestamps
        qs = qs.filter(first_seen_at__lte=cursor.first_seen_at).exclude(
            first_seen_at=cursor.first_seen_at, id__gte=cursor.id
        )
    if newer_than is not None:
        # oldest first, so a burst larger than a page arrives over several polls without a gap
        qs = qs.filter(first_seen_at__gte=newer_than.first_seen_at).exclude(
            first_seen_at=newer_than.first_seen_at, id__lte=newer_than.id
        )
        newer_rows = list(qs.order_by("first_seen_at", "id")[:limit])[::-1]
        newest = Cursor(newer_rows[0].first_seen_at, newer_rows[0].id) if newer_rows else None
        return TaskPage(rows=newer_rows, next_cursor=None, newest=newest)
    rows = list(qs.order_by("-first_seen_at", "-id")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = Cursor(rows[-1].first_seen_at, rows[-1].id) if more else None
    newest = Cursor(rows[0].first_seen_at, rows[0].id) if rows else None
    return TaskPage(rows=rows, next_cursor=next_cursor, newest=newest)


# -- one task ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskDetail:
    task: TaskRun
    attempts: list[TaskAttempt]
    parent: TaskRun | None
    root: TaskRun | None
    children: list[TaskRun]
    retry_of: TaskRun | None
    retried_as: TaskRun | None


MAX_CHILDREN = 100


def task_detail(*, task_id: str) -> TaskDetail | None:
    task = TaskRun.objects.filter(task_id=task_id).first()
    if task is None:
        return None
    related_ids = {i for i in (task.parent_id, task.root_id, task.retry_of, task.retried_as) if i}
    related = {r.task_id: r for r in TaskRun.objects.filter(task_id__in=related_ids)}
    retried_as = related.get(task.retried_as or "") or (
        TaskRun.objects.filter(retry_of=task.task_id).order_by("first_seen_at").first()
    )
    return TaskDetail(
        task=task,
        attempts=list(TaskAttempt.objects.filter(task_id=task_id).order_by("attempt")),
        # Rows recorded before the merge dropped self-parents may still name their own id.
        parent=related.get(task.parent_id or "") if task.parent_id != task.task_id else None,
        root=related.get(task.root_id or "") if task.root_id != task.task_id else None,
        # A Celery retry is published from inside the task: its parent id is the task's own id.
        children=list(
            TaskRun.objects.filter(parent_id=task_id)
            .exclude(task_id=task_id)
            .order_by("first_seen_at", "id")[:MAX_CHILDREN]
        ),
        retry_of=related.get(task.retry_of or ""),
        retried_as=retried_as,
    )


# -- statistics -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Percentiles:
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None


@dataclass(frozen=True)
class TaskTypeStats:
    name: str
    count: int
    failed: int
    runtime: Percentiles = field(default_factory=Percentiles)
    queue_wait: Percentiles = field(default_factory=Percentiles)

    @property
    def failure_rate(self) -> float:
        return self.failed / self.count if self.count else 0.0


SAMPLE_LIMIT = 20_000  # per task type on databases without percentile functions
# The Statistics page shows the busiest names only: any client can publish tasks under new names,
# and 3,000 forged names took the page from milliseconds to seconds (percentiles per name).
STATS_MAX_NAMES = 50


@dataclass(frozen=True)
class TaskStats:
    rows: list[TaskTypeStats]  # the busiest names, most tasks first
    more_names: int = 0  # names in the window beyond those rows


def task_type_stats(
    *, since: dt.datetime, name: str = "", limit: int = STATS_MAX_NAMES
) -> TaskStats:
    """Count, failure rate and runtime / queue-wait percentiles since ``since``, for the
    ``limit`` task names with most tasks (one grouped query; percentiles for those names only)."""
    base = TaskRun.objects.filter(first_seen_at__gte=since).exclude(name__isnull=True)
    if name:
        base = base.filter(name=name)
    counts = list(
        base.values("name")
        .annotate(count=Count("id"), failed=Count("id", filter=Q(state=TaskState.FAILURE)))
        .order_by("-count", "name")[:limit]
    )
    more = 0
    if len(counts) == limit:
        more = base.values("name").distinct().count() - limit
    names = [row["name"] for row in counts if row["name"]]
    percentiles = _percentiles(since=since, names=names)
    stats = [
        TaskTypeStats(
            name=row["name"] or "",
            count=row["count"],
            failed=row["failed"],
            runtime=percentiles.get((row["name"] or "", "runtime"), Percentiles()),
            queue_wait=percentiles.get((row["name"] or "", "queue_wait"), Percentiles()),
        )
        for row in counts
    ]
    return TaskStats(rows=stats, more_names=max(0, more))


def _percentiles(*, since: dt.datetime, names: list[str]) -> dict[tuple[str, str], Percentiles]:
    out: dict[tuple[str, str], Percentiles] = {}
    if not names:
        return out
    if connection.vendor == "postgresql":
        sql = """
            SELECT name,
              percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY runtime),
              percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY queue_wait)
            FROM dashboard_taskrun
            WHERE first_seen_at >= %s AND name = ANY(%s)
            GROUP BY name
        """
        with connection.cursor() as cursor:
            cursor.execute(sql, [since, names])
            for task_name, runtime, wait in cursor.fetchall():
                out[(task_name, "runtime")] = Percentiles(*(runtime or (None, None, None)))
                out[(task_name, "queue_wait")] = Percentiles(*(wait or (None, None, None)))
        return out
    for task_name in names:  # each on the (name, -first_seen_at) index
        for column in ("runtime", "queue_wait"):
            values = list(
                TaskRun.objects.filter(first_seen_at__gte=since, name=task_name)
                .exclude(**{f"{column}__isnull": True})
                .order_by("-first_seen_at")
                .values_list(column, flat=True)[:SAMPLE_LIMIT]
            )
            out[(task_name, column)] = _quantiles(values)
    return out


def _quantiles(values: Sequence[float]) -> Percentiles:
    if not values:
        return Percentiles()
    if len(values) == 1:
        return Percentiles(values[0], values[0], values[0])
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return Percentiles(cuts[49], cuts[94], cuts[98])


# -- overview -------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueSummary:
    queue: str
    waiting: int
    running: int
    failed_last_hour: int
    finished_per_bucket: list[int]  # oldest first


@dataclass(frozen=True)
class Overview:
    queues: list[QueueSummary]
    totals: dict[str, int]  # by state, last 24 hours
    recent_failures: list[TaskRun]
    bucket_minutes: int
    # When the monitor counted ``queues`` and ``totals`` (Unix time); None: it has not yet (or
    # Redis cannot be read), and the figures are empty rather than zero.
    measured_at: float | None = None
    measured_age: float | None = None  # seconds since
    measured_every: float = 10.0  # the monitor's check interval

    @property
    def measured(self) -> bool:
        return self.measured_at is not None

    @property
    def stale(self) -> bool:
        """Counted long enough ago that the monitor has stopped checking (as for its snapshot)."""
        limit = STALE_AFTER_CHECKS * self.measured_every + STALE_GRACE_SECONDS
        return self.measured_age is not None and self.measured_age > limit


SPARK_BUCKETS = 12
SPARK_MINUTES = 5


def overview(client: redis.Redis | None = None) -> Overview:
    """Queues and 24-hour totals as the monitor's latest check counted them (one GET; their cost
    does not grow with the task table), and the latest failures (one indexed query)."""
    figures = _overview_figures(client)
    # Newest failure first, by when it failed (the time the list shows), not when it was published.
    recent_failures = list(
        TaskRun.objects.filter(state=TaskState.FAILURE, finished_at__isnull=False)
        .only(*LIST_FIELDS)
        .order_by("-finished_at", "-id")[:10]
    )
    if figures is None:
        return Overview([], {}, recent_failures, SPARK_MINUTES)
    at, every, queues, totals, bucket_minutes = figures
    return Overview(
        queues=queues,
        totals=totals,
        recent_failures=recent_failures,
        bucket_minutes=bucket_minutes,
        measured_at=at,
        measured_age=max(0.0, time.time() - at),
        measured_every=every,
    )


def _overview_figures(
    client: redis.Redis | None,
) -> tuple[float, float, list[QueueSummary], dict[str, int], int] | None:
    """What ``dashboard.alerts.task_figures.overview_figures`` wrote; None when there is nothing
    (or nothing readable) to show."""
    try:
        raw = (client or shared_client()).get(
            redis_keys.overview_figures(settings.TASKTRAIL_STREAM)
        )
    except redis.RedisError:
        return None
    if not raw:
        return None
    try:
        data: dict[str, Any] = json.loads(raw)
        at = float(data["at"])
        every = float(data.get("every") or DEFAULT_CHECK_SECONDS)
        queues = [
            QueueSummary(
                queue=str(name),
                waiting=int(q["waiting"]),
                running=int(q["running"]),
                failed_last_hour=int(q["failed_last_hour"]),
                finished_per_bucket=[int(n) for n in q["finished"]][:SPARK_BUCKETS],
            )
            for name, q in sorted(dict(data["queues"]).items())
        ]
        totals = {str(state): int(n) for state, n in dict(data["totals"]).items()}
        bucket_minutes = int(data.get("bucket_minutes") or SPARK_MINUTES)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return at, every, queues, totals, bucket_minutes

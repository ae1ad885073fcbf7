"""Figures the rules need from the task rows: what finished per queue, what runs too long, what
each worker left unfinished; and the overview page's figures, counted here once per check rather
than on every page load and poll. Every age is measured against the ``now`` the check passes in."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from typing import Any

from django.db.models import Count, Q

from dashboard.alerts import rules
from dashboard.models import TaskRun, TaskState

RATE_WINDOW = dt.timedelta(minutes=5)  # finished per minute is averaged over this
WAITING_STATES = (TaskState.PENDING, TaskState.RECEIVED, TaskState.RETRY)
SPARK_BUCKETS = 12  # the overview's sparkline: finished per bucket, per queue
SPARK_MINUTES = 5
LOST_TASKS_KEPT = dt.timedelta(hours=24)  # lost, not retried tasks keep a worker incident open
OVERDUE_ROWS_MAX = 1000
CELERY_LIMIT_GRACE = 30.0  # a task past its hard time limit is killed; allow for the kill's event


def now_datetime(now: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(now, tz=dt.UTC)


def finished_per_queue(
    names: Sequence[str], windows: Sequence[float], now: dt.datetime
) -> dict[str, dict[str, int]]:
    """Per queue: tasks finished within each window (seconds) and within ``RATE_WINDOW``."""
    if not names:
        return {}
    longest = max([*windows, RATE_WINDOW.total_seconds()])
    counts = {
        f"w{int(w)}": Count("id", filter=Q(finished_at__gte=now - dt.timedelta(seconds=w)))
        for w in windows
    }
    counts["rate"] = Count("id", filter=Q(finished_at__gte=now - RATE_WINDOW))
    rows = (
        TaskRun.objects.filter(
            finished_at__gte=now - dt.timedelta(seconds=longest), queue__in=names
        )
        .values("queue")
        .annotate(**counts)
    )
    out: dict[str, dict[str, int]] = {}
    for row in rows:
        values: dict[str, Any] = dict(row)
        queue = str(values.pop("queue"))
        out[queue] = {k: int(v) for k, v in values.items()}
    return out


def running_tasks(
    now: dt.datetime, limit_for: Callable[[str], float], shortest: float
) -> list[rules.RunningTask]:
    """STARTED tasks that have run at least ``shortest`` seconds, with the limit for each."""
    rows = (
        TaskRun.objects.filter(
            state=TaskState.STARTED,
            started_at__lt=now - dt.timedelta(seconds=shortest),
        )
        .order_by("started_at")
        .values_list("task_id", "name", "worker", "started_at")[:OVERDUE_ROWS_MAX]
    )
    return [
        rules.RunningTask(
            task_id=task_id,
            name=name or "(unknown task)",
            worker=worker,
            runtime=(now - started_at).total_seconds(),
            limit=limit_for(name or ""),
        )
        for task_id, name, worker, started_at in rows
        if started_at is not None
    ]


def unfinished_per_worker(now: dt.datetime) -> dict[str, tuple[int, int]]:
    """Worker -> (tasks STARTED, tasks LOST in the last day and not retried)."""
    rows = (
        TaskRun.objects.filter(
            Q(state=TaskState.STARTED)
            | Q(
                state=TaskState.LOST, retried_as__isnull=True, started_at__gte=now - LOST_TASKS_KEPT
            )
        )
        .exclude(worker__isnull=True)
        .values("worker", "state")
        .annotate(n=Count("id"))
    )
    out: dict[str, tuple[int, int]] = {}
    for row in rows:
        worker = str(row["worker"])
        running, lost = out.get(worker, (0, 0))
        if row["state"] == TaskState.STARTED:
            running += row["n"]
        else:
            lost += row["n"]
        out[worker] = (running, lost)
    return out


class TaskLimits:
    """The runtime limit of a task: the setting, else its Celery time limit, else the default."""

    def __init__(self, thresholds: rules.Thresholds, app: Any = None) -> None:
        self.thresholds = thresholds
        self.app = app
        self._cache: dict[str, float] = {}

    def _celery_limit(self, name: str) -> float | None:
        app = self.app
        if app is None:
            return None
        task = app.tasks.get(name)
        limits = [
            getattr(task, "time_limit", None),
            getattr(task, "soft_time_limit", None),
            app.conf.task_time_limit,
            app.conf.task_soft_time_limit,
        ]
        found = [float(x) for x in limits if isinstance(x, int | float) and x > 0]
        return max(found) + CELERY_LIMIT_GRACE if found else None

    def __call__(self, name: str) -> float:
        limit = self._cache.get(name)
        if limit is None:
            if name in self.thresholds.tasks:
                limit = self.thresholds.tasks[name]
            else:
                limit = self._celery_limit(name) or self.thresholds.task_max_runtime_seconds
            self._cache[name] = limit
        return limit

    def shortest(self) -> float:
        """A lower bound of every limit, to read only the STARTED rows that may be over one."""
        candidates = [self.thresholds.task_max_runtime_seconds, *self.thresholds.tasks.values()]
        if self.app is not None:
            candidates += [self(name) for name in list(self.app.tasks)]
        positive = [c for c in candidates if c > 0]
        return min(positive) if positive else float("inf")


def overview_figures(now: dt.datetime) -> dict[str, Any]:
    """The overview's figures (JSON-ready): per queue, tasks waiting and running, failed in the
    last hour, finished per ``SPARK_MINUTES`` bucket for the last hour; tasks per state first seen
    in the last 24 hours."""
    start = time.perf_counter()
    hour_ago = now - dt.timedelta(hours=1)
    day_ago = now - dt.timedelta(hours=24)
    spark_start = now - dt.timedelta(minutes=SPARK_BUCKETS * SPARK_MINUTES)

    # A row with no queue yet is one whose worker events came before its publish event: it gets
    # its queue a moment later, and is not a queue of its own ("(unknown)") meanwhile.
    queued = TaskRun.objects.exclude(queue__isnull=True).exclude(queue="")
    live = (
        queued.filter(state__in=[*WAITING_STATES, TaskState.STARTED])
        .values("queue", "state")
        .annotate(n=Count("id"))
    )
    failed = (
        queued.filter(state=TaskState.FAILURE, first_seen_at__gte=hour_ago)
        .values("queue")
        .annotate(n=Count("id"))
    )
    edges = [
        spark_start + dt.timedelta(minutes=SPARK_MINUTES * i) for i in range(SPARK_BUCKETS + 1)
    ]
    finished = (
        queued.filter(finished_at__gte=spark_start)
        .values("queue")
        .annotate(
            **{
                f"b{i}": Count(
                    "id", filter=Q(finished_at__gte=edges[i], finished_at__lt=edges[i + 1])
                )
                for i in range(SPARK_BUCKETS)
            }
        )
    )
    per_queue: dict[str, dict[str, Any]] = {}

    def queue(name: str | None) -> dict[str, Any]:
        return per_queue.setdefault(
            name or "",
            {"waiting": 0, "running": 0, "failed_last_hour": 0, "finished": [0] * SPARK_BUCKETS},
        )

    for live_row in live:
        key = "running" if live_row["state"] == TaskState.STARTED else "waiting"
        queue(live_row["queue"])[key] += live_row["n"]
    for failed_row in failed:
        queue(failed_row["queue"])["failed_last_hour"] = failed_row["n"]
    for bucket_row in finished:
        values: dict[str, Any] = dict(bucket_row)
        queue(values["queue"])["finished"] = [int(values[f"b{i}"]) for i in range(SPARK_BUCKETS)]
    totals = {
        str(row["state"]): int(row["n"])
        for row in TaskRun.objects.filter(first_seen_at__gte=day_ago)
        .values("state")
        .annotate(n=Count("id"))
    }
    return {
        "at": now.timestamp(),
        "bucket_minutes": SPARK_MINUTES,
        "queues": {name: per_queue[name] for name in sorted(per_queue)},
        "totals": totals,
        "seconds": round(time.perf_counter() - start, 6),  # what counting cost this check
    }

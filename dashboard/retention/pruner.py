"""``prune_pass``: delete what the retention policy says is old, in small batches.

Each batch picks at most ``batch_size`` ids on an index (the oldest first), then deletes them in one
short transaction, so the monitor's writes wait at most one batch and memory holds one batch of ids
whatever the table's size. In that transaction the task rows are locked first, in task id order
(the order the monitor's upserts and the operator actions lock them in, so none of them deadlock),
and the condition is checked again on the locked rows: a task that an event changed since it was
picked is left alone. Then its attempts and its django-celery-results row go, then the task.

A pass stops at ``deadline`` (a ``time.monotonic()`` value) or when ``keep_going`` says so (the
lease was lost) and the next pass carries on from what is left: every batch is whole.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from django.db import DatabaseError, connection, transaction
from django.db.models import F, Model, Q, QuerySet
from django.db.models.functions import Collate
from django_celery_results.models import TaskResult

from dashboard.models import (
    AlertIncident,
    OperatorAction,
    OperatorActionTarget,
    TaskAttempt,
    TaskRun,
)
from dashboard.retention.policy import (
    FAILED_STATES,
    FINISHED_STATES,
    UNFINISHED_STATES,
    Cutoffs,
    RetentionPolicy,
)

DEFAULT_BATCH_SIZE: Final = 1000
# Seconds of rest after each batch per second the batch took: a pass uses at most two thirds of a
# core, so the monitor's ingest beside it keeps its pace on a small machine (bench/retention.py).
DEFAULT_REST_RATIO: Final = 0.5
MAX_REST_SECONDS: Final = 2.0
DRY_RUN_CAP: Final = 1_000_000  # a dry run counts at most this many task rows per table
# Reported per table, in this order.
TABLES: Final = (
    "TaskRun",
    "TaskAttempt",
    "TaskResult",
    "OperatorAction",
    "OperatorActionTarget",
    "AlertIncident",
)


@dataclass
class PruneReport:
    """What one pass removed (or, dry, would remove) per table, and how it went."""

    started_at: dt.datetime
    dry_run: bool
    cutoffs: Cutoffs
    removed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    # dry run: tables whose count stopped at the cap (there are more)
    capped: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(TABLES, False))
    batches: int = 0
    duration_seconds: float = 0.0
    complete: bool = True  # False: stopped early (``stopped`` says why); the next pass goes on
    stopped: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.removed.values())

    def as_dict(self) -> dict[str, Any]:
        def iso(value: dt.datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "started_at": iso(self.started_at),
            "dry_run": self.dry_run,
            "cutoffs": {
                "finished": iso(self.cutoffs.finished),
                "failed": iso(self.cutoffs.failed),
                "unfinished": iso(self.cutoffs.unfinished),
                "audit": iso(self.cutoffs.audit),
            },
            "removed": dict(self.removed),
            "capped": dict(self.capped),
            "batches": self.batches,
            "duration_seconds": round(self.duration_seconds, 3),
            "complete": self.complete,
            "stopped": self.stopped,
            "errors": list(self.errors),
        }


class _Stop(Exception):
    """The pass's time is up or its lease is gone: end after the batch in hand."""


@dataclass(frozen=True)
class _TaskStep:
    """One indexed way to find old task rows: a condition and the column it walks in order."""

    condition: Q
    order: str  # the index's time column; picking walks it from the oldest, resuming where it was


def _task_steps(cutoffs: Cutoffs) -> Iterator[_TaskStep]:
    # One step per state, so each walks an index as a range in time order: the partial
    # finished_at indexes of the finished and the failed states, or (state, first_seen_at).
    for states, cutoff in ((FINISHED_STATES, cutoffs.finished), (FAILED_STATES, cutoffs.failed)):
        if cutoff is None:
            continue
        for state in states:
            yield _TaskStep(Q(state=state, finished_at__lt=cutoff), "finished_at")
            # No finish time (LOST, or events that never said): aged by its latest event.
            yield _TaskStep(
                Q(state=state, finished_at__isnull=True, updated_at__lt=cutoff), "updated_at"
            )
    if cutoffs.unfinished is not None:
        cutoff = cutoffs.unfinished
        for state in UNFINISHED_STATES:
            # first_seen_at <= updated_at always: the indexed bound finds the candidates, the
            # latest event and the ETA decide (a task scheduled for later is not given up).
            yield _TaskStep(
                Q(state=state, first_seen_at__lt=cutoff, updated_at__lt=cutoff)
                & (Q(eta__isnull=True) | Q(eta__lt=cutoff)),
                "first_seen_at",
            )


def _lock_order() -> Collate | F:
    """Task id order by code point, as ``dashboard.services`` and the monitor's upserts lock."""
    if connection.vendor == "postgresql":
        return Collate(F("task_id"), "C")
    return F("task_id")


def _batch_limit(batch_size: int) -> int:
    # SQLite takes at most 999 parameters per statement on older builds; each id is one.
    if connection.vendor == "sqlite":
        return max(1, min(batch_size, 900))
    return max(1, batch_size)


class _Pass:
    def __init__(
        self,
        report: PruneReport,
        batch_size: int,
        deadline: float | None,
        keep_going: Callable[[], bool] | None,
        rest_ratio: float = 0.0,
    ) -> None:
        self.report = report
        self.limit = _batch_limit(batch_size)
        self.deadline = deadline
        self.keep_going = keep_going
        self.rest_ratio = max(0.0, rest_ratio)
        self._batch_started: float | None = None

    def check(self) -> None:
        """Between batches: rest in proportion to the last batch's work, then stop if told to."""
        if self._batch_started is not None and self.rest_ratio:
            now = time.monotonic()
            rest = min((now - self._batch_started) * self.rest_ratio, MAX_REST_SECONDS)
            if self.deadline is not None:
                rest = min(rest, max(0.0, self.deadline - now))
            time.sleep(rest)
        self._batch_started = time.monotonic()
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise _Stop("deadline")
        if self.keep_going is not None and not self.keep_going():
            raise _Stop("lease lost")

    def add(self, table: str, count: int) -> None:
        self.report.removed[table] += count

    # -- deleting ----------------------------------------------------------------------------

    def _pick(self, qs: QuerySet[Any], order: str, since: object) -> list[tuple[int, object]]:
        if since is not None:
            qs = qs.filter(**{f"{order}__gte": since})
        return list(qs.order_by(order).values_list("id", order)[: self.limit])

    def tasks(self, step: _TaskStep) -> None:
        since: object = None
        while True:
            self.check()
            picked = self._pick(TaskRun.objects.filter(step.condition), step.order, since)
            if not picked:
                return
            since = picked[-1][1]
            with transaction.atomic():
                locked = _lock(step.condition, [pk for pk, _ in picked])
                if locked:
                    task_ids = [task_id for _, task_id in locked]
                    self.add("TaskAttempt", _delete_where_in(TaskAttempt, "task_id", task_ids))
                    self.add("TaskResult", _delete_where_in(TaskResult, "task_id", task_ids))
                    self.add("TaskRun", _delete_where_in(TaskRun, "id", [i for i, _ in locked]))
            self.report.batches += 1
            if len(picked) < self.limit:
                return

    def simple(
        self,
        table: str,
        qs: QuerySet[Any],
        order: str,
        children: Callable[[list[int]], int] | None = None,
    ) -> None:
        since: object = None
        while True:
            self.check()
            picked = self._pick(qs, order, since)
            if not picked:
                return
            since = picked[-1][1]
            ids = [pk for pk, _ in picked]
            with transaction.atomic():
                if children is not None:
                    children(ids)
                self.add(table, _delete(qs.filter(id__in=ids)))
            self.report.batches += 1
            if len(picked) < self.limit:
                return

    # -- counting (dry run) -----------------------------------------------------------------

    def count(self, table: str, qs: QuerySet[Any], cap: int) -> None:
        left = cap - self.report.removed[table]
        if left <= 0:
            self.report.capped[table] = True
            return
        found = qs.values("id")[: left + 1].count()
        if found > left:
            self.report.capped[table] = True
            found = left
        self.add(table, found)


def _lock(condition: Q, ids: list[int]) -> list[tuple[int, str]]:
    """Lock the picked rows that still match, in task id order; (id, task_id) of each."""
    rows = TaskRun.objects.filter(condition)
    if connection.vendor == "postgresql":
        # one array parameter rather than one per id: psycopg and the planner both handle a
        # thousand placeholders per statement far slower than one array
        rows = rows.extra(where=['"dashboard_taskrun"."id" = ANY(%s)'], params=[ids])
    else:
        rows = rows.filter(id__in=ids)
    return list(rows.order_by(_lock_order()).select_for_update().values_list("id", "task_id"))


def _delete_where_in(model: type[Model], column: str, values: list[Any]) -> int:
    """``DELETE FROM <model> WHERE <column> IN values``: these tables have nothing cascading
    from them."""
    qn = connection.ops.quote_name
    table = qn(model._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"DELETE FROM {table} WHERE {qn(column)} = ANY(%s)", [values])  # noqa: S608
        else:
            marks = ", ".join(["%s"] * len(values))
            cursor.execute(f"DELETE FROM {table} WHERE {qn(column)} IN ({marks})", values)  # noqa: S608
        return cursor.rowcount


def _delete(qs: QuerySet[Any]) -> int:
    """One ``DELETE … WHERE`` (Django deletes without loading rows when nothing cascades; the audit
    targets, the only cascade, are deleted first). Counts the model's own rows only."""
    _total, per_model = qs.delete()
    return per_model.get(qs.model._meta.label, 0)


def prune_pass(
    policy: RetentionPolicy,
    *,
    now: dt.datetime,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    deadline: float | None = None,
    keep_going: Callable[[], bool] | None = None,
    dry_run_cap: int = DRY_RUN_CAP,
    rest_ratio: float = DEFAULT_REST_RATIO,
) -> PruneReport:
    """Remove (``dry_run``: count) every row ``policy`` says is old at ``now``.

    ``deadline`` is a ``time.monotonic()`` value; ``keep_going`` is asked before every batch (the
    lease's renewal). ``rest_ratio``: seconds of rest after each batch per second of its work. A
    database error ends the step it happened in and is listed in the report;
    the other steps still run."""
    cutoffs = policy.cutoffs(now)
    report = PruneReport(started_at=now, dry_run=dry_run, cutoffs=cutoffs)
    run = _Pass(report, batch_size, deadline, keep_going, 0.0 if dry_run else rest_ratio)
    begun = time.monotonic()
    try:
        if dry_run:
            _count_all(run, cutoffs, dry_run_cap)
        else:
            _delete_all(run, cutoffs)
    except _Stop as stop:
        report.complete = False
        report.stopped = str(stop)
    report.duration_seconds = time.monotonic() - begun
    return report


def _guarded(run: _Pass, what: str, step: Callable[[], None]) -> None:
    try:
        step()
    except DatabaseError as exc:
        run.report.errors.append(f"{what}: {(str(exc).splitlines() or [repr(exc)])[0]}")
        run.report.complete = False


def _audit_qs(cutoff: dt.datetime) -> QuerySet[OperatorAction]:
    return OperatorAction.objects.filter(at__lt=cutoff)


def _incident_qs(cutoff: dt.datetime) -> QuerySet[AlertIncident]:
    return AlertIncident.objects.filter(resolved_at__isnull=False, resolved_at__lt=cutoff)


def _orphan_results_qs(cutoff: dt.datetime) -> QuerySet[TaskResult]:
    return TaskResult.objects.filter(date_done__lt=cutoff).exclude(
        task_id__in=TaskRun.objects.values("task_id")
    )


def _delete_all(run: _Pass, cutoffs: Cutoffs) -> None:
    for step in _task_steps(cutoffs):
        _guarded(run, "tasks", lambda step=step: run.tasks(step))  # type: ignore[misc]
    if cutoffs.orphan_results is not None:
        orphans = _orphan_results_qs(cutoffs.orphan_results)
        _guarded(run, "results", lambda: run.simple("TaskResult", orphans, "date_done"))
    if cutoffs.audit is not None:
        audit = cutoffs.audit

        def targets(ids: list[int]) -> int:
            count = _delete(OperatorActionTarget.objects.filter(action_id__in=ids))
            run.add("OperatorActionTarget", count)
            return count

        _guarded(
            run, "audit", lambda: run.simple("OperatorAction", _audit_qs(audit), "at", targets)
        )
        _guarded(
            run,
            "incidents",
            lambda: run.simple("AlertIncident", _incident_qs(audit), "resolved_at"),
        )


def _count_all(run: _Pass, cutoffs: Cutoffs, cap: int) -> None:
    for step in _task_steps(cutoffs):
        run.check()
        left = cap - run.report.removed["TaskRun"]
        tasks = TaskRun.objects.filter(step.condition).order_by(step.order)
        picked = tasks.values("task_id")[: max(0, left)]
        run.count("TaskRun", TaskRun.objects.filter(step.condition), cap)
        run.count("TaskAttempt", TaskAttempt.objects.filter(task_id__in=picked), cap)
        run.count("TaskResult", TaskResult.objects.filter(task_id__in=picked), cap)
    run.check()
    if cutoffs.orphan_results is not None:
        run.count("TaskResult", _orphan_results_qs(cutoffs.orphan_results), cap)
    if cutoffs.audit is not None:
        actions = _audit_qs(cutoffs.audit)
        run.count("OperatorAction", actions, cap)
        picked_actions = actions.order_by("at").values("id")[:cap]
        run.count(
            "OperatorActionTarget",
            OperatorActionTarget.objects.filter(action_id__in=picked_actions),
            cap,
        )
        run.count("AlertIncident", _incident_qs(cutoffs.audit), cap)

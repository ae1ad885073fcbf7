"""The Retention page's figures: rows and sizes per table, the oldest row kept, what the next pass
removes, and the last pass's figures (from Redis).

Cheap on a table of tens of millions of rows: on PostgreSQL the row counts are the planner's
estimates (``pg_class.reltuples``, kept by autovacuum), the oldest row is read off an index, and
the next pass's counts stop at ``NEXT_PASS_CAP``. SQLite has no estimate: it counts, up to the
same cap.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any, Final

import redis
from django.conf import settings
from django.db import connection
from django.db.models import Model
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django_celery_results.models import TaskResult

from dashboard.models import (
    AlertIncident,
    OperatorAction,
    OperatorActionTarget,
    TaskAttempt,
    TaskRun,
)
from dashboard.redis_client import shared_client
from dashboard.retention.policy import RetentionPolicy
from dashboard.retention.pruner import TABLES, PruneReport, prune_pass
from dashboard.retention.runner import last_figures

NEXT_PASS_CAP: Final = 100_000
NEXT_PASS_SECONDS: Final = 5.0  # the page's counting stops after this long and says so

# table -> (model, the time column its oldest row is told by; None: it goes with its parent)
_TABLES: Final[dict[str, tuple[type[Model], str | None]]] = {
    "TaskRun": (TaskRun, "first_seen_at"),
    "TaskAttempt": (TaskAttempt, None),
    "TaskResult": (TaskResult, "date_done"),
    "OperatorAction": (OperatorAction, "at"),
    "OperatorActionTarget": (OperatorActionTarget, None),
    "AlertIncident": (AlertIncident, "opened_at"),
}
_GOES_WITH: Final = {"TaskAttempt": "its task", "OperatorActionTarget": "its action"}


@dataclass(frozen=True)
class TableFigures:
    name: str
    rows: int
    estimated: bool  # the planner's estimate: "about"
    rows_more: bool  # counted up to the cap and there are more: "more than"
    size_bytes: int | None  # PostgreSQL only
    oldest: dt.datetime | None
    goes_with: str  # "" or what the rows are removed with
    next_pass: int
    next_pass_more: bool  # the count stopped at the cap: "more than"


@dataclass(frozen=True)
class RetentionView:
    policy: RetentionPolicy
    tables: list[TableFigures]
    next_pass: PruneReport
    last: dict[str, Any] | None
    last_started_at: dt.datetime | None
    next_run_at: dt.datetime | None
    every_seconds: float
    redis_error: str = ""
    cutoffs: dict[str, dt.datetime | None] = field(default_factory=dict)


def _estimates() -> dict[str, tuple[int | None, int | None]]:
    """table name -> (estimated rows, total bytes with indexes and TOAST), PostgreSQL."""
    names = {model._meta.db_table: name for name, (model, _col) in _TABLES.items()}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, c.reltuples, pg_total_relation_size(c.oid) FROM pg_class c "
            "WHERE c.relkind = 'r' AND c.relname = ANY(%s) "
            "AND c.relnamespace = to_regnamespace(current_schema())::oid",
            [list(names)],
        )
        found: dict[str, tuple[int | None, int | None]] = {}
        for relname, reltuples, size in cursor.fetchall():
            # -1: never analysed nor vacuumed (PostgreSQL 14+)
            found[names[relname]] = (int(reltuples) if reltuples >= 0 else None, int(size))
    return found


def _oldest(model: type[Model], column: str | None) -> dt.datetime | None:
    if column is None:
        return None
    value = (
        model._default_manager.filter(**{f"{column}__isnull": False})
        .order_by(column)
        .values_list(column, flat=True)
        .first()
    )
    return value if isinstance(value, dt.datetime) else None


def _last(client: redis.Redis) -> tuple[dict[str, Any] | None, str]:
    try:
        return last_figures(client), ""
    except redis.RedisError as exc:
        return None, f"the stream's Redis cannot be read ({type(exc).__name__})"


def _when(value: object) -> dt.datetime | None:
    return parse_datetime(value) if isinstance(value, str) else None


def retention_view(*, now: dt.datetime | None = None) -> RetentionView:
    now = now or timezone.now()
    policy = RetentionPolicy.from_settings()
    postgres = connection.vendor == "postgresql"
    estimates = _estimates() if postgres else {}
    next_pass = prune_pass(
        policy,
        now=now,
        dry_run=True,
        dry_run_cap=NEXT_PASS_CAP,
        deadline=time.monotonic() + NEXT_PASS_SECONDS,
    )
    tables = []
    for name in TABLES:
        model, column = _TABLES[name]
        estimate, size = estimates.get(name, (None, None))
        rows_more = False
        if estimate is None:
            # SQLite, or a table PostgreSQL has not analysed yet (new, or small): count, capped
            rows = model._default_manager.values("pk")[: NEXT_PASS_CAP + 1].count()
            rows_more = rows > NEXT_PASS_CAP
            rows = min(rows, NEXT_PASS_CAP)
        else:
            rows = estimate
        tables.append(
            TableFigures(
                name=name,
                rows=rows,
                estimated=estimate is not None,
                rows_more=rows_more,
                size_bytes=size,
                oldest=_oldest(model, column),
                goes_with=_GOES_WITH.get(name, ""),
                next_pass=next_pass.removed[name],
                next_pass_more=next_pass.capped[name] or not next_pass.complete,
            )
        )
    last, redis_error = _last(shared_client())
    cut = next_pass.cutoffs
    return RetentionView(
        policy=policy,
        tables=tables,
        next_pass=next_pass,
        last=last,
        last_started_at=_when(last.get("started_at")) if last else None,
        next_run_at=_when(last.get("next_run_at")) if last else None,
        every_seconds=float(settings.TASKTRAIL_PRUNE_EVERY_SECONDS),
        redis_error=redis_error,
        cutoffs={
            "finished": cut.finished,
            "failed": cut.failed,
            "unfinished": cut.unfinished,
            "audit": cut.audit,
        },
    )

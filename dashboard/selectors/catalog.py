"""The shop's task catalog as the dashboard reads it: which task names a recent worker registered,
and how (queue, opted out of retries, limits). Written by the monitor from each worker's reports
(``dashboard.ingest.catalog``); "recent" is ``TASKTRAIL_CATALOG_MAX_AGE_SECONDS``.

A ``TaskCatalog`` reads lazily, one indexed query per batch of names it has not seen, and keeps
what it read for its own lifetime: make one per request (or per action).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from django.conf import settings
from django.db.models import Max
from django.utils import timezone

from dashboard.models import RegisteredTask

_CHUNK: Final = 500
_COLUMNS: Final = (
    "name", "hostname", "queue", "retryable", "max_retries", "time_limit", "soft_time_limit",
    "last_reported_at", "declared_retryable", "arg_names",
)  # fmt: skip
MAX_HOSTNAMES: Final = 10  # hosts listed per task; the count says how many there are


@dataclass(frozen=True)
class KnownTask:
    """A task name as the most recent worker that registered it reported it."""

    name: str
    queue: str | None
    retryable: bool
    max_retries: int | None
    time_limit: float | None
    soft_time_limit: float | None
    last_reported_at: dt.datetime
    hostnames: tuple[str, ...]  # recent workers that have it, newest report first (capped)
    host_count: int
    declared_retryable: bool = False  # sets tasktrail_retryable = True itself
    arg_names: tuple[str, ...] | None = None  # positional parameters, from its code; None: unknown


class TaskCatalog:
    def __init__(self, now: dt.datetime | None = None) -> None:
        self.now = now or timezone.now()
        self.cutoff = self.now - dt.timedelta(seconds=settings.TASKTRAIL_CATALOG_MAX_AGE_SECONDS)
        self._known: dict[str, KnownTask | None] = {}
        self._last: dict[str, dt.datetime | None] = {}  # names no recent worker has

    def load(self, names: Iterable[str | None]) -> None:
        """Read the recent reports of ``names`` not read yet: one query per 500 names, and one more
        for those no recent worker has (when any worker last had them)."""
        wanted = sorted({n for n in names if n and n not in self._known})
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            rows = (
                RegisteredTask.objects.filter(name__in=chunk, last_reported_at__gte=self.cutoff)
                .order_by("name", "-last_reported_at", "hostname")
                .values_list(*_COLUMNS)
            )
            by_name: dict[str, list[tuple]] = {}
            for row in rows:
                by_name.setdefault(row[0], []).append(row)
            for name in chunk:
                found = by_name.get(name)
                self._known[name] = _known_task(found) if found else None
            missing = [name for name in chunk if self._known[name] is None]
            if missing:  # when they were last seen, for the refusal (one query, not one per task)
                self._last.update(dict.fromkeys(missing))
                self._last.update(
                    RegisteredTask.objects.filter(name__in=missing)
                    .values("name")
                    .annotate(last=Max("last_reported_at"))
                    .values_list("name", "last")
                )

    def get(self, name: str | None) -> KnownTask | None:
        """The task as the newest recent report has it; None when no recent worker has it."""
        if not name:
            return None
        if name not in self._known:
            self.load([name])
        return self._known.get(name)

    def last_reported(self, name: str) -> dt.datetime | None:
        """When any worker last reported ``name``, however long ago (old rows are kept a while)."""
        known = self.get(name)
        if known is not None:
            return known.last_reported_at
        return self._last.get(name)

    def default_queue(self, name: str | None) -> str | None:
        known = self.get(name)
        return known.queue if known else None


def _known_task(rows: list[tuple]) -> KnownTask:
    name, _, queue, retryable, max_retries, time_limit, soft_limit, reported_at = rows[0][:8]
    declared, arg_names = rows[0][8:10]
    return KnownTask(
        name=name,
        queue=queue,
        retryable=retryable,
        max_retries=max_retries,
        time_limit=time_limit,
        soft_time_limit=soft_limit,
        last_reported_at=reported_at,
        hostnames=tuple(row[1] for row in rows[:MAX_HOSTNAMES]),
        host_count=len(rows),
        declared_retryable=bool(declared),
        arg_names=None if arg_names is None else tuple(arg_names.split(",") if arg_names else ()),
    )


def task_catalog() -> TaskCatalog:
    return TaskCatalog()

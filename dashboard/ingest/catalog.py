"""Write a worker's task catalog (``tasktrail.catalog``) into ``RegisteredTask`` rows.

One report replaces what that worker (by hostname) reported before: its tasks are upserted, and
those it no longer has are removed (unless the report left some out). A report older than what is
stored for the worker is ignored, so two monitors taking reports out of order keep the newer one.
The report's time comes from the worker's clock, so it is capped at now: a clock running ahead
cannot keep a catalog "recent" for longer than its reports keep coming.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from dashboard.models import RegisteredTask
from tasktrail.catalog import Report

_UPDATED = (
    "app_name", "queue", "retryable", "declared_retryable", "arg_names", "max_retries",
    "time_limit", "soft_time_limit", "last_reported_at",
)  # fmt: skip
_BATCH = 500


@dataclass(frozen=True)
class CatalogWritten:
    hostname: str
    tasks: int
    removed: int
    skipped: bool = False  # older than what is stored for this worker


def write_catalog(report: Report, now: dt.datetime | None = None) -> CatalogWritten:
    """Store ``report``. Raises the database's errors unchanged."""
    now = now or timezone.now()
    reported_at = min(dt.datetime.fromtimestamp(report.ts, tz=dt.UTC), now)
    with transaction.atomic():
        rows = RegisteredTask.objects.filter(hostname=report.hostname)
        newest = rows.aggregate(newest=Max("last_reported_at"))["newest"]
        if newest is not None and newest > reported_at:
            return CatalogWritten(report.hostname, 0, 0, skipped=True)
        objects = [
            RegisteredTask(
                hostname=report.hostname,
                name=task.name,
                app_name=report.app,
                queue=task.queue,
                retryable=task.retryable,
                declared_retryable=task.declared_retryable,
                arg_names=None if task.arg_names is None else ",".join(task.arg_names),
                max_retries=task.max_retries,
                time_limit=task.time_limit,
                soft_time_limit=task.soft_time_limit,
                last_reported_at=reported_at,
            )
            for task in report.tasks
        ]
        for start in range(0, len(objects), _BATCH):
            RegisteredTask.objects.bulk_create(
                objects[start : start + _BATCH],
                update_conflicts=True,
                unique_fields=["hostname", "name"],
                update_fields=list(_UPDATED),
            )
        removed = 0
        if not report.truncated:  # a report that left tasks out cannot say which are gone
            removed, _ = rows.filter(last_reported_at__lt=reported_at).delete()
        # Rows long past "recent" serve only to say when a task was last seen; keep them a while.
        keep_for = dt.timedelta(seconds=4 * settings.TASKTRAIL_CATALOG_MAX_AGE_SECONDS)
        RegisteredTask.objects.filter(last_reported_at__lt=now - keep_for).delete()
    return CatalogWritten(report.hostname, len(objects), removed)

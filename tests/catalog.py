"""Writing the task catalog as a worker's report would, for tests that retry without a worker."""

from __future__ import annotations

import time

from dashboard.ingest.catalog import CatalogWritten, write_catalog
from tasktrail.catalog import Report, TaskInfo, describe


def register_demo_tasks(
    *, hostname: str = "demo-worker@test", age_seconds: float = 0.0
) -> CatalogWritten:
    """The demo app's tasks (``workers.tasks``), as one of its workers reports them on start."""
    from workers.celery_app import app

    app.loader.import_default_modules()  # what a worker imports on start
    tasks, left_out = describe(app)
    report = Report(
        hostname=hostname,
        app=str(app.main),
        ts=time.time() - age_seconds,
        tasks=tuple(tasks),
        truncated=left_out,
    )
    return write_catalog(report)


def register_task(
    name: str,
    *,
    hostname: str | None = None,
    queue: str | None = "default",
    retryable: bool = True,
    age_seconds: float = 0.0,
) -> CatalogWritten:
    """One task, as reported by a worker of its own (``hostname``) ``age_seconds`` ago."""
    report = Report(
        hostname=hostname or f"test-{name}@host",
        app="shop",
        ts=time.time() - age_seconds,
        tasks=(TaskInfo(name=name, queue=queue, retryable=retryable),),
    )
    return write_catalog(report)

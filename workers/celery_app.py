"""The Celery app of a Django project using tasktrail, configured from Django settings.

``celery -A workers.celery_app worker`` runs a worker; the recorder is installed on import, so every
process that loads this app (web, worker, monitor) records the tasks it publishes or runs.
"""

from __future__ import annotations

import os

from celery import Celery

from tasktrail import recorder, revocations
from tasktrail.tracing.setup import install_worker_hooks

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")

app = Celery("tasktrail", include=["workers.tasks"])
app.config_from_object("django.conf:settings", namespace="CELERY")


def _install_recorder() -> None:
    from django.conf import settings

    # Celery's Django fix-up reads this name from the app's own config, not the namespaced one.
    app.conf.CELERY_DB_REUSE_MAX = settings.CELERY_DB_REUSE_MAX
    recorder.install(
        app,
        redis_url=settings.TASKTRAIL_RECORDER_URL,
        stream=settings.TASKTRAIL_STREAM,
        max_args_bytes=settings.TASKTRAIL_MAX_ARGS_BYTES,
        secret_keys=settings.TASKTRAIL_REDACT_KEYS,
    )
    revocations.install(app, settings.REDIS_URL)
    # Tracing (OTEL_* variables) starts in each pool process, after the fork (tasktrail.tracing).
    install_worker_hooks()


_install_recorder()

"""The Celery app of a Django project using tasktrail, configured from Django settings.

``celery -A workers.celery_app worker`` runs a worker; tasktrail is installed on import, as a shop
would install it, so every process that loads this app (web, worker, monitor) records the tasks it
publishes or runs. Only the recorder URL is passed (the settings may fall back to the embedded
Valkey, which the environment does not name); the stream, argument size and secret keys come from
the same ``TASKTRAIL_*`` variables the settings read, as in a shop.
"""

from __future__ import annotations

import os

from celery import Celery

import tasktrail

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")

app = Celery("tasktrail", include=["workers.tasks"])
app.config_from_object("django.conf:settings", namespace="CELERY")


def _install_tasktrail() -> None:
    from django.conf import settings

    # Celery's Django fix-up reads this name from the app's own config, not the namespaced one.
    app.conf.CELERY_DB_REUSE_MAX = settings.CELERY_DB_REUSE_MAX
    tasktrail.install(app, recorder_url=settings.TASKTRAIL_RECORDER_URL)


_install_tasktrail()

"""The shop's Celery app. tasktrail is installed right after ``Celery(...)``, before the app
reads its configuration: the client reads its settings (and the broker URL) only when needed."""

import os

from celery import Celery

import tasktrail

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")

app = Celery("shop")
tasktrail.install(app)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

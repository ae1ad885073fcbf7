"""A shop's Django settings: Django 4.2, Celery configured from ``CELERY_*`` settings.

The test sets the broker (``SHOP_BROKER_URL``, a key prefix of its own through
``SHOP_BROKER_TRANSPORT_OPTIONS``), the database file and where tasks leave their marker files.
"""

import json
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "shop-integration-test-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "dashboard",
    "workers",
]
ROOT_URLCONF = "dashboard.urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SHOP_DB", str(BASE_DIR / "shop.sqlite3")),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "Europe/Berlin"

CELERY_BROKER_URL = os.environ.get("SHOP_BROKER_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_TRANSPORT_OPTIONS = json.loads(os.environ.get("SHOP_BROKER_TRANSPORT_OPTIONS", "{}"))
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {"workers.tasks.ship_order": {"queue": "shipping"}}
CELERY_TIMEZONE = TIME_ZONE

SHOP_MARKER_DIR = os.environ.get("SHOP_MARKER_DIR", str(BASE_DIR / "markers"))

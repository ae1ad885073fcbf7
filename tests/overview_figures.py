"""The overview's figures as the monitor's check counts and writes them, for tests that look at the
overview page: run this after writing the rows, as a check would run after them."""

from __future__ import annotations

import json
import time
from typing import Any

import redis
from django.conf import settings

from dashboard import redis_keys
from dashboard.alerts import task_figures


def measure_overview(now: float | None = None, client: redis.Redis | None = None) -> dict[str, Any]:
    """Count the figures as ``CheckRunner.run_once`` does and write them where the page reads."""
    figures = {
        **task_figures.overview_figures(task_figures.now_datetime(now or time.time())),
        "every": settings.TASKTRAIL_ALERT_CHECK_SECONDS,
    }
    owned = client is None
    client = client or redis.Redis.from_url(settings.REDIS_URL)
    try:
        client.set(redis_keys.overview_figures(settings.TASKTRAIL_STREAM), json.dumps(figures))
    finally:
        if owned:
            client.close()
    return figures

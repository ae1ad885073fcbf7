"""Tasks only the reliability tests use (workers import them with ``--include``)."""

from __future__ import annotations

import os
import threading
import time

import redis
from celery import shared_task

_local = threading.local()


def counter_key() -> str:
    """Counts finished ``tick`` tasks in Redis: what the workers did, whatever the monitor does.

    Under the stream's prefix, so the suite's Redis clean-up removes it."""
    from django.conf import settings

    return settings.TASKTRAIL_STREAM + ":reliability:ticks"


def _client() -> redis.Redis:
    client = getattr(_local, "client", None)
    if client is None or getattr(_local, "pid", None) != os.getpid():
        from django.conf import settings

        # The broker's Redis, which the test reads: the stream's (REDIS_URL) may be another.
        client = _local.client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        _local.pid = os.getpid()
    return client


# No result: the workers touch only Redis, so they run on while the monitor's database is away.
@shared_task(tasktrail_input_id="ref", ignore_result=True)
def tick(ref: str) -> None:
    _client().incr(counter_key())


def release_key() -> str:
    from django.conf import settings

    return settings.TASKTRAIL_STREAM + ":reliability:release"


@shared_task(tasktrail_input_id="ref")
def hold(ref: str, seconds: float) -> str:
    """Run for ``seconds``, or until the release key is set."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not _client().exists(release_key()):
        time.sleep(0.1)
    return ref

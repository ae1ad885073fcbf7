"""Real worker processes (prefork), the real broker and database; the monitor drains in-process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from dashboard.ingest.monitor import Monitor
from dashboard.ingest.stream import StreamConsumer
from tasktrail import recorder
from tests.processes import ROOT, Child, spawn

__all__ = ["ROOT"]  # the project directory, for the tests that start processes of their own

pytestmark = pytest.mark.integration


def database_url_for_children() -> str:
    """The URL of the database the tests use (the test database, not the configured one)."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def monitor_alert_env(queue_thresholds: dict[str, float], **extra: str) -> dict[str, str]:
    """The environment of a ``manage.py monitor`` process that checks alerts every 0.5 s against
    the test database and Redis, with these queue thresholds (``TASKTRAIL_ALERTS``)."""
    return {
        **os.environ,
        "REDIS_URL": settings.REDIS_URL,
        "DATABASE_URL": database_url_for_children(),
        "TASKTRAIL_STREAM": settings.TASKTRAIL_STREAM,
        "TASKTRAIL_ALERT_CHECK_SECONDS": "0.5",
        "TASKTRAIL_ALERTS": json.dumps({"queue": queue_thresholds}),
        "TASKTRAIL_ALERT_EMAILS": "oncall@example.com",
        **extra,
    }


@dataclass
class Worker:
    """A ``celery worker`` subprocess whose output is collected for assertions."""

    queues: str = "default,inventory"
    env: dict[str, str] = field(default_factory=dict)
    name: str = "itest"
    include: str = "tests.integration.tasks"
    extra_args: tuple[str, ...] = ()
    child: Child | None = None

    def start(self, timeout: float = 60.0) -> Worker:
        env = {
            **os.environ,
            "REDIS_URL": settings.REDIS_URL,
            "DATABASE_URL": database_url_for_children(),
            "TASKTRAIL_STREAM": settings.TASKTRAIL_STREAM,
            "CELERY_SKIP_CHECKS": "1",
            **self.env,
        }
        command = [
            sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker",
            "-P", "prefork", "-c", "2", "-Q", self.queues, "-n", f"{self.name}@%h",
            "-I", self.include, "-l", "info",
            "--without-gossip", "--without-mingle", "--without-heartbeat", *self.extra_args,
        ]  # fmt: skip
        # its own process group: stopping it reaches the pool processes too
        self.child = spawn(command, env, group=True)
        try:
            self.child.output.wait_for(" ready.", timeout)
        except AssertionError as exc:
            self.stop()
            raise RuntimeError(f"worker did not start: {exc}") from None
        return self

    @property
    def process(self) -> subprocess.Popen[str] | None:
        return None if self.child is None else self.child.process

    @property
    def log(self) -> str:
        return "" if self.child is None else self.child.output.text

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        """Its exit code (None: never started)."""
        return None if self.child is None else self.child.stop(sig, timeout)


@pytest.fixture
def worker(redis_client: Any, transactional_db: Any) -> Iterator[Worker]:
    started = Worker().start()
    yield started
    started.stop()


@pytest.fixture
def start_worker(redis_client: Any, transactional_db: Any) -> Iterator[Callable[..., Worker]]:
    workers: list[Worker] = []

    def start(**kwargs: Any) -> Worker:
        w = Worker(**kwargs).start()
        workers.append(w)
        return w

    yield start
    for w in workers:
        w.stop()


def drain(client: Any) -> None:
    """Write this process's buffered events, then let a monitor process the whole stream."""
    recorder.flush()
    Monitor(StreamConsumer(client, settings.TASKTRAIL_STREAM, consumer="itest")).run(drain=True)


def wait_until(
    client: Any, condition: Callable[[], Any], timeout: float = 30.0, what: str = "condition"
) -> Any:
    """Drain the stream until ``condition()`` is truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        drain(client)
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)

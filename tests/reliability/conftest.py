"""Fault and load tests: real worker processes, a real ``manage.py monitor`` process, the real
broker and database, all on loopback. Each test is bounded in time and stops what it starts.

Every test has a short variant (``make test``) and a long one with the figures of the issue
(``@pytest.mark.reliability``, ``make test-reliability``): see ``sized``.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.conf import settings
from django.db.models import Count

from dashboard.ingest.stream import GROUP
from dashboard.models import TaskAttempt, TaskRun
from tasktrail import recorder
from tasktrail.events import ENTRY_FIELD
from tests.integration.conftest import Worker, database_url_for_children, start_worker
from tests.processes import Child, spawn
from tests.reliability import tasks as rtasks

__all__ = ["start_worker"]  # the integration fixture, for the tests of this package


INCLUDE = "tests.integration.tasks,tests.reliability.tasks"

on_postgresql = pytest.mark.skipif(
    not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
    reason="needs a database server to take away (runs on PostgreSQL; SQLite is a local file)",
)


_figures: list[str] = []


def report(line: str) -> None:
    """Keep a measured figure for the end of the run (shown without ``-s``, to be quoted)."""
    _figures.append(line)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _figures:
        terminalreporter.section("tasktrail reliability figures")
        for line in _figures:
            terminalreporter.write_line(line)


def sized(name: str, short: Any, long: Any) -> Any:
    """Parametrize ``name`` with the short size (``make test``) and the long one (marked)."""
    return pytest.mark.parametrize(
        name,
        [
            pytest.param(short, id="short"),
            pytest.param(long, id="long", marks=pytest.mark.reliability),
        ],
    )


def reliability_worker(name: str, **kwargs: Any) -> Worker:
    """A worker that runs the reliability tasks (not started)."""
    return Worker(name=name, include=INCLUDE, **kwargs)


@dataclass
class MonitorProcess:
    """``manage.py monitor`` as its own process, output collected."""

    database_url: str = ""
    consumer: str = "reliability-monitor"
    env: dict[str, str] = field(default_factory=dict)
    args: Sequence[str] = ("--no-alerts",)
    child: Child | None = None

    def start(self) -> MonitorProcess:
        env = {
            **os.environ,
            "REDIS_URL": settings.REDIS_URL,
            "DATABASE_URL": self.database_url or database_url_for_children(),
            "TASKTRAIL_STREAM": settings.TASKTRAIL_STREAM,
            **self.env,
        }
        command = [sys.executable, "manage.py", "monitor", "--consumer", self.consumer, *self.args]
        self.child = spawn(command, env)
        return self

    @property
    def log(self) -> str:
        return "" if self.child is None else self.child.output.text

    def describe(self, lines: int = 30) -> str:
        """Whether it runs, and the end of its output: for failure messages."""
        if self.child is None:
            return f"monitor {self.consumer} (not started)"
        code = self.child.process.poll()
        state = "running" if code is None else f"exit {code}"
        return f"monitor {self.consumer} ({state}):\n" + self.child.output.tail(lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        return None if self.child is None else self.child.stop(sig, timeout)


@pytest.fixture
def start_monitor(redis_client: Any, transactional_db: Any) -> Iterator[Callable[..., Any]]:
    monitors: list[MonitorProcess] = []

    def start(**kwargs: Any) -> MonitorProcess:
        monitor = MonitorProcess(**kwargs).start()
        monitors.append(monitor)
        return monitor

    yield start
    for monitor in monitors:
        monitor.stop()


def wait_for(
    condition: Callable[[], Any],
    timeout: float,
    what: str,
    every: float = 0.2,
    explain: Callable[[], str] | None = None,
) -> Any:
    """Poll ``condition`` until truthy; on time-out fail with ``what`` and ``explain()``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            details = f"\n{explain()}" if explain is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{details}")
        time.sleep(every)


def publish_ticks(count: int, prefix: str, first: int = 0) -> list[str]:
    """Publish ``count`` tick tasks (input ids ``prefix-<first>`` …); their task ids."""
    ids = [rtasks.tick.delay(f"{prefix}-{i}").id for i in range(first, first + count)]
    recorder.flush()  # the publish events of this process
    return ids


def ticks_done(client: Any) -> int:
    return int(client.get(rtasks.counter_key()) or 0)


def backlog(client: Any) -> int:
    """Entries no monitor has acknowledged yet (acknowledged entries are deleted)."""
    return int(client.xlen(settings.TASKTRAIL_STREAM))


def events_waiting(client: Any) -> int:
    """Stream entries holding task events no monitor has acknowledged. A worker's heartbeat (an
    entry of its own, every few seconds) may be there the moment before a monitor reads it."""
    entries = client.xrange(settings.TASKTRAIL_STREAM)
    return sum(1 for _, fields in entries if ENTRY_FIELD in fields)


def pending(client: Any) -> int:
    try:
        return int(client.xpending(settings.TASKTRAIL_STREAM, GROUP)["pending"])
    except Exception:  # no group yet: nothing pending
        return 0


def finished_rows() -> int:
    return TaskRun.objects.filter(finished_at__isnull=False).count()


def progress(client: Any, *monitors: MonitorProcess) -> str:
    """Rows, stream and monitors as they stand: for failure messages."""
    figures = (
        f"{finished_rows()} finished rows of {TaskRun.objects.count()}, {ticks_done(client)} "
        f"ticks done, backlog {backlog(client)}, pending {pending(client)}"
    )
    return "\n".join([figures, *(m.describe() for m in monitors)])


def complete_ticks() -> Any:
    """Tick rows that every event of a successful run has reached: published, received (from the
    worker's main process), started and succeeded (from a pool process). Those processes flush on
    their own timers, so a SUCCESS row can come before its received event does."""
    return TaskRun.objects.filter(
        name=rtasks.tick.name,
        state="SUCCESS",
        published_at__isnull=False,
        received_at__isnull=False,
        started_at__isnull=False,
        finished_at__isnull=False,
        retries=0,
        exc_type__isnull=True,
    )


def assert_exactly_one_correct_row_each(client: Any, prefix: str, count: int) -> None:
    """Every tick published with ``prefix`` has one complete SUCCESS row and one attempt; the
    database holds nothing else; the stream has nothing left to process."""
    rows = TaskRun.objects.filter(name=rtasks.tick.name)
    assert rows.count() == count
    assert set(rows.values_list("input_id", flat=True)) == {f"{prefix}-{i}" for i in range(count)}
    complete = complete_ticks()
    assert complete.count() == count, list(rows.exclude(pk__in=complete).values()[:5])
    attempts = TaskAttempt.objects.filter(task_id__in=rows.values("task_id"))
    assert attempts.count() == count
    assert attempts.filter(attempt=0, outcome="SUCCESS", finished_at__isnull=False).count() == count
    duplicated = TaskAttempt.objects.values("task_id").annotate(n=Count("id")).filter(n__gt=1)
    assert not duplicated.exists()
    assert events_waiting(client) == 0

"""``manage.py monitor`` as its own process: losing the database, and stopping cleanly."""

from __future__ import annotations

import os
import sys
import time

import pytest
from django.conf import settings
from django.db import connection

from dashboard.models import TaskRun
from tests.integration.conftest import database_url_for_children
from tests.integration.tcp_proxy import TcpProxy
from tests.processes import Child, spawn
from workers.tasks import send_invoice

pytestmark = pytest.mark.integration


DEADLINE = 60.0


def start_monitor(database_url: str) -> Child:
    env = {
        **os.environ,
        "REDIS_URL": settings.REDIS_URL,
        "DATABASE_URL": database_url,
        "TASKTRAIL_STREAM": settings.TASKTRAIL_STREAM,
    }
    return spawn([sys.executable, "manage.py", "monitor", "--consumer", "itest-monitor"], env)


def wait_for(condition, timeout: float, what: str, monitor: Child):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; monitor output:\n{monitor.output.tail()}")


def test_sigterm_stops_the_monitor_cleanly(worker, redis_client):
    monitor = start_monitor(database_url_for_children())
    try:
        result = send_invoice.delay(4242)
        result.get(timeout=30)
        wait_for(
            lambda: TaskRun.objects.filter(task_id=result.id, state="SUCCESS").exists(),
            DEADLINE,
            "row",
            monitor,
        )
    finally:
        code = monitor.stop()
    assert code == 0, monitor.output.text
    assert "stopping after the batch in hand" in monitor.output.text


@pytest.mark.skipif(
    not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
    reason="needs a database server to take away (runs on PostgreSQL; SQLite is a local file)",
)
def test_database_down_while_the_monitor_runs_loses_nothing(worker, redis_client):
    db = connection.settings_dict
    proxy = TcpProxy(db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432)).start()
    proxied = f"postgres://{db['USER']}@127.0.0.1:{proxy.port}/{db['NAME']}"
    monitor = start_monitor(proxied)
    try:
        first = send_invoice.delay(1)
        wait_for(
            lambda: TaskRun.objects.filter(task_id=first.id, state="SUCCESS").exists(),
            DEADLINE,
            "first row",
            monitor,
        )

        before_cut = monitor.output.mark()
        proxy.cut()  # the monitor loses its database; workers and this test keep theirs
        results = [send_invoice.delay(100 + i) for i in range(20)]
        for r in results:
            r.get(timeout=30, propagate=False)  # tasks run at full speed without the monitor
        # The monitor read their events and failed to write them: proof it tried while cut off.
        monitor.output.wait_for("database unavailable", DEADLINE, after=before_cut)
        ids = [r.id for r in results]
        assert TaskRun.objects.filter(task_id__in=ids).count() == 0
        assert redis_client.xlen(settings.TASKTRAIL_STREAM) > 0  # their events wait in the stream
        assert monitor.process.poll() is None  # it waits for the database instead of exiting

        proxy.restore()
        wait_for(
            lambda: (
                TaskRun.objects.filter(task_id__in=ids, finished_at__isnull=False).count() == 20
            ),
            DEADLINE,
            "rows after the database came back",
            monitor,
        )
        states = dict(TaskRun.objects.filter(task_id__in=ids).values_list("input_id", "state"))
        assert states == {
            str(100 + i): ("FAILURE" if i % 10 == 7 else "SUCCESS") for i in range(20)
        }
    finally:
        code = monitor.stop()
        proxy.cut()
    assert code == 0, monitor.output.text

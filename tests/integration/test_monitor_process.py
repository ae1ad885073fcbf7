"""``manage.py monitor`` as its own process: losing the database, and stopping cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from django.conf import settings
from django.db import connection

from dashboard.models import TaskRun
from tests.integration.conftest import ROOT, database_url_for_children
from tests.integration.tcp_proxy import TcpProxy
from workers.tasks import send_invoice

pytestmark = pytest.mark.integration


def start_monitor(database_url: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "REDIS_URL": settings.REDIS_URL,
        "DATABASE_URL": database_url,
        "TASKTRAIL_STREAM": settings.TASKTRAIL_STREAM,
    }
    return subprocess.Popen(
        [sys.executable, "manage.py", "monitor", "--consumer", "itest-monitor"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def stop(process: subprocess.Popen[str]) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    assert process.stdout is not None
    return process.stdout.read()


def test_sigterm_stops_the_monitor_cleanly(worker, redis_client):
    monitor = start_monitor(database_url_for_children())
    try:
        result = send_invoice.delay(4242)
        result.get(timeout=30)
        wait_for(
            lambda: TaskRun.objects.filter(task_id=result.id, state="SUCCESS").exists(), 30, "row"
        )
    finally:
        output = stop(monitor)
    assert monitor.returncode == 0, output
    assert "stopping after the batch in hand" in output


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
            30,
            "first row",
        )

        proxy.cut()  # the monitor loses its database; workers and this test keep theirs
        results = [send_invoice.delay(100 + i) for i in range(20)]
        for r in results:
            r.get(timeout=30, propagate=False)  # tasks run at full speed without the monitor
        time.sleep(2)
        ids = [r.id for r in results]
        assert TaskRun.objects.filter(task_id__in=ids).count() == 0
        assert redis_client.xlen(settings.TASKTRAIL_STREAM) > 0  # events wait in the stream

        proxy.restore()
        wait_for(
            lambda: (
                TaskRun.objects.filter(task_id__in=ids, finished_at__isnull=False).count() == 20
            ),
            60,
            "rows after the database came back",
        )
        states = dict(TaskRun.objects.filter(task_id__in=ids).values_list("input_id", "state"))
        assert states == {
            str(100 + i): ("FAILURE" if i % 10 == 7 else "SUCCESS") for i in range(20)
        }
    finally:
        output = stop(monitor)
        proxy.cut()
    assert "database unavailable" in output
    assert monitor.returncode == 0

"""``manage.py monitor`` with an alert whose mail server accepts the connection and never answers
(``EMAIL_TIMEOUT`` far longer than the test): the mail is stuck, the rows are not."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from django.conf import settings

from dashboard.models import AlertIncident, TaskRun
from tasktrail.events import encode_batch
from tests.conftest import new_task_id, story_success
from tests.integration.conftest import monitor_alert_env
from tests.processes import Child, spawn
from tests.smtp import HangingSmtpServer
from workers.broker import PRIORITY_SEP

pytestmark = pytest.mark.integration

ROWS_DEADLINE = 20.0  # a monitor writes a batch within a second; the stuck send lasts 300 s
START_DEADLINE = 60.0


@pytest.fixture
def hanging_smtp() -> Iterator[HangingSmtpServer]:
    server = HangingSmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def monitor_stuck_on_mail(redis_client, transactional_db, hanging_smtp) -> Iterator[Child]:
    """A monitor process whose first alert mail is in hand and blocked."""
    redis_client.sadd("_kombu.binding.isolated", f"isolated{PRIORITY_SEP}{PRIORITY_SEP}isolated")
    headers = {"id": "stuck-1", "task": "shop.report", "tasktrail_published": time.time() - 60}
    redis_client.lpush("isolated", json.dumps({"body": "", "headers": headers, "properties": {}}))
    quick = {"oldest_seconds": 30, "no_consumer_seconds": 0, "no_progress_seconds": 0}
    env = monitor_alert_env(
        quick,
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=str(hanging_smtp.port),
        EMAIL_TIMEOUT="300",
    )
    monitor = spawn(
        [sys.executable, "manage.py", "monitor", "--consumer", "itest-hanging-mail"], env
    )
    try:
        assert hanging_smtp.wait_for_client(START_DEADLINE), monitor.output.text
        yield monitor
    finally:
        monitor.stop(signal.SIGKILL)


def test_rows_are_written_on_time_while_an_alert_mail_hangs(
    monitor_stuck_on_mail, hanging_smtp, redis_client
):
    task_id = new_task_id()
    redis_client.xadd(settings.TASKTRAIL_STREAM, encode_batch(story_success(task_id, time.time())))
    deadline = time.monotonic() + ROWS_DEADLINE
    while not TaskRun.objects.filter(task_id=task_id, state="SUCCESS").exists():
        assert monitor_stuck_on_mail.process.poll() is None, monitor_stuck_on_mail.output.text
        assert time.monotonic() < deadline, "no row while the mail hangs:\n" + (
            monitor_stuck_on_mail.output.text
        )
        time.sleep(0.05)
    assert hanging_smtp.clients_waiting() == 1  # the send was in hand the whole time
    assert AlertIncident.objects.get(subject="isolated").last_notified_at is None


def test_sigterm_stops_the_monitor_while_an_alert_mail_hangs(monitor_stuck_on_mail, hanging_smtp):
    process = monitor_stuck_on_mail.process
    assert hanging_smtp.clients_waiting() == 1
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        pytest.fail("the monitor did not stop:\n" + monitor_stuck_on_mail.output.text)
    assert process.returncode == 0, monitor_stuck_on_mail.output.text

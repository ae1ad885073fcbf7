"""The alert threads: beside the ingest loop and apart from each other, each with its own database
connection, stopped with a bounded wait. Real Redis, database and (hanging) SMTP server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections

from dashboard import redis_keys
from dashboard.alerts.threads import AlertThreads, Repeating, start_alerts
from dashboard.alerts.worker_probe import WorkersSeen
from dashboard.models import AlertIncident
from tests.smtp import HangingSmtpServer
from workers.broker import PRIORITY_SEP

pytestmark = pytest.mark.django_db(transaction=True)  # the threads' connections see the rows

DEADLINE = 30.0


def wait_for(condition: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + DEADLINE
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
    return value


def test_start_alerts_is_off_when_the_interval_is_zero(redis_client):
    assert start_alerts(redis_client, every=0) is None


@pytest.mark.parametrize("error", [OperationalError("server closed"), RuntimeError("exploded")])
def test_a_failed_cycle_closes_the_threads_connection_and_the_next_cycle_runs(error):
    closed_at_start: list[bool] = []

    def job() -> None:
        closed_at_start.append(connections[DEFAULT_DB_ALIAS].connection is None)
        if len(closed_at_start) == 1:
            AlertIncident.objects.count()  # opens this thread's connection
            raise error

    thread = Repeating("test", job, every=0.01).start()
    wait_for(lambda: thread.cycles >= 2, "a second cycle")
    thread.stop()
    assert thread.join(DEADLINE)
    assert closed_at_start[:2] == [True, True]


def test_a_stopped_thread_closes_its_own_connection():
    used: list[Any] = []

    def job() -> None:
        AlertIncident.objects.count()
        used.append(connections[DEFAULT_DB_ALIAS])  # this thread's, not the test's

    thread = Repeating("test", job, every=0.01).start()
    wait_for(lambda: used, "a cycle")
    thread.stop()
    assert thread.join(DEADLINE)
    assert used[0] is not connections[DEFAULT_DB_ALIAS]
    assert used[0].connection is None


def test_a_woken_thread_runs_its_next_cycle_before_its_time():
    thread = Repeating("test", lambda: None, every=3600).start()
    wait_for(lambda: thread.cycles >= 1, "the first cycle")
    thread.wake()
    wait_for(lambda: thread.cycles >= 2, "the cycle woken")
    thread.stop()
    assert thread.join(DEADLINE)


def test_stopping_waits_at_most_its_timeout_for_a_cycle_in_hand():
    entered, release = threading.Event(), threading.Event()

    def hung() -> None:
        entered.set()
        release.wait(DEADLINE)

    alerts = AlertThreads(
        checks=Repeating("checks", lambda: None, every=60).start(),
        mail=Repeating("mail", hung, every=60).start(),
    )
    assert entered.wait(DEADLINE)
    try:
        assert alerts.stop(timeout=0.1) is False
    finally:
        release.set()
    assert alerts.mail.join(DEADLINE)


# -- a mail server that never answers ------------------------------------------------------------


@pytest.fixture
def hanging_smtp(settings) -> Iterator[HangingSmtpServer]:
    server = HangingSmtpServer().start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 300  # far longer than the test: the send stays blocked throughout
    settings.TASKTRAIL_ALERT_EMAILS = ["oncall@example.com"]
    yield server
    server.stop()


def declare(client, name: str) -> None:
    """What kombu writes when a queue is declared (the checks re-read the list every 30 s)."""
    client.sadd(f"_kombu.binding.{name}", f"{name}{PRIORITY_SEP}{PRIORITY_SEP}{name}")


def stuck_queue(client, name: str) -> None:
    """Into a queue, a message that has waited a minute."""
    headers = {"id": f"{name}-1", "task": "shop.report", "tasktrail_published": time.time() - 60}
    client.lpush(name, json.dumps({"body": "", "headers": headers, "properties": {}}))


def snapshot_queues(client) -> dict[str, Any]:
    raw = client.get(redis_keys.alert_snapshot(settings.TASKTRAIL_STREAM))
    return json.loads(raw)["queues"] if raw else {}


def test_checks_go_on_while_an_alert_mail_hangs(redis_client, hanging_smtp, settings):
    settings.TASKTRAIL_ALERTS = {
        "queue": {"oldest_seconds": 30, "no_consumer_seconds": 0, "no_progress_seconds": 0}
    }
    declare(redis_client, "isolated")
    declare(redis_client, "isolated2")
    stuck_queue(redis_client, "isolated")
    alerts = start_alerts(
        redis_client, every=0.05, probe=lambda: WorkersSeen(time.time(), {"w1@h": ("isolated",)})
    )
    assert alerts is not None
    try:
        assert hanging_smtp.wait_for_client(DEADLINE)  # the "opened" mail is in hand, and stuck
        stuck_queue(redis_client, "isolated2")
        wait_for(
            lambda: AlertIncident.objects.filter(subject="isolated2").exists(),
            "the second incident",
        )
        wait_for(
            lambda: snapshot_queues(redis_client).get("isolated2", {}).get("state") == "stuck",
            "the second queue stuck in the snapshot",
        )
        assert hanging_smtp.clients_waiting() == 1
        assert AlertIncident.objects.get(subject="isolated").last_notified_at is None
    finally:
        alerts.stop(timeout=1)
        hanging_smtp.stop()  # the send fails at once, and the mail thread ends
        assert alerts.mail.join(DEADLINE)

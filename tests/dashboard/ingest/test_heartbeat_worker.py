"""Real worker processes beat every second; the monitor (draining in the test's process) keeps
their rows, and the alert checks (worker_lost_seconds 3) declare gone only a worker whose
heartbeats stopped without a goodbye: never a solo worker busy with a long task."""

from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery import Celery
from django.conf import settings
from kombu import Connection

from dashboard.alerts import rules
from dashboard.alerts.runner import CheckRunner
from dashboard.alerts.worker_probe import HeartbeatProbe
from dashboard.models import AlertIncident, TaskRun, Worker, WorkerCounts
from tests.integration.conftest import drain
from tests.processes import Child, spawn

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

LOST_AFTER = 3.0  # worker_lost_seconds
THRESHOLDS = rules.Thresholds(worker_lost_seconds=LOST_AFTER)
RABBIT = os.environ.get("TASKTRAIL_TEST_RABBIT_URL", "amqp://guest:guest@127.0.0.1:5672//")


@pytest.fixture
def queue(redis_client: Any) -> Iterator[str]:
    name = f"hb-{uuid.uuid4().hex[:10]}"
    yield name
    redis_client.delete(*redis_client.scan_iter(match=f"*{name}*", count=1000), "__none__")


@pytest.fixture
def start_worker(redis_client: Any, queue: str) -> Iterator[Callable[..., Child]]:
    children: list[Child] = []

    def start(pool: str = "solo", broker: str = "", name: str = "hb") -> Child:
        command = [
            sys.executable, "-m", "celery", "-A", "tests.dashboard.ingest.heartbeat_shop",
            "worker", "-P", pool, "-c", "2", "-Q", queue, "-n", f"{name}-{queue}@%h",
            "-l", "info", "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        env = {
            **os.environ,
            "SHOP_BROKER_URL": broker or settings.REDIS_URL,
            "SHOP_QUEUE": queue,
            "SHOP_RELEASE": "2026.12-test",
            "TASKTRAIL_RECORDER_URL": settings.REDIS_URL,
            "TASKTRAIL_STREAM": settings.TASKTRAIL_STREAM,
            "TASKTRAIL_HEARTBEAT_INTERVAL": "1",
        }
        child = spawn(command, env, group=True)
        children.append(child)
        try:
            child.output.wait_for(" ready.", 60)
        except AssertionError:
            child.stop()
            raise
        return child

    yield start
    for child in children:
        child.stop(signal.SIGKILL, timeout=10)


def publish(queue: str, name: str, *args: Any, broker: str = "") -> str:
    app = Celery("hb-publisher", broker=broker or settings.REDIS_URL, set_as_current=False)
    try:
        return app.send_task(name, args=args, queue=queue).id
    finally:
        app.close()


def check(redis_client: Any) -> CheckRunner:
    return CheckRunner(client=redis_client, probe=HeartbeatProbe(), thresholds=THRESHOLDS)


def cycle(runner: CheckRunner, redis_client: Any) -> int:
    """What the monitor does: write what the stream holds, then check. Tasks marked LOST."""
    drain(redis_client)
    return runner.run_once().marked_lost


def until(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def state(task_id: str) -> str | None:
    return TaskRun.objects.filter(task_id=task_id).values_list("state", flat=True).first()


def row(queue: str) -> Worker | None:
    return Worker.objects.filter(hostname__contains=queue).first()


def open_worker_incidents() -> int:
    return AlertIncident.objects.filter(rule=rules.WORKER_LOST, resolved_at__isnull=True).count()


@pytest.mark.timeout(120)
def test_a_solo_worker_busy_far_longer_than_the_threshold_is_never_lost(
    start_worker, queue, redis_client
):
    start_worker(pool="solo")
    runner = check(redis_client)
    task_id = publish(queue, "shop.nap", 30)  # ten times worker_lost_seconds
    until(lambda: cycle(runner, redis_client) == 0 and state(task_id) == "STARTED", 30, "start")
    beats_seen = set()
    while state(task_id) == "STARTED":
        assert cycle(runner, redis_client) == 0
        worker = row(queue)
        assert worker is not None and worker.status == "online", worker
        beats_seen.add(worker.last_heartbeat_at)
        assert open_worker_incidents() == 0
        time.sleep(0.5)
    assert state(task_id) == "SUCCESS"
    assert len(beats_seen) >= 10  # it beat all along the task, not only between tasks
    worker = until(
        lambda: cycle(runner, redis_client) == 0 and (w := row(queue)) and w.processed == 1 and w,
        10,
        "the count",
    )
    assert (worker.pool, worker.concurrency, worker.queues) == ("solo", 1, [queue])
    assert worker.release == "2026.12-test" and worker.celery_version


@pytest.mark.timeout(120)
def test_a_killed_worker_is_gone_its_tasks_lost_and_an_incident_opens(
    start_worker, queue, redis_client
):
    doomed = start_worker(pool="prefork")
    runner = check(redis_client)
    ids = [publish(queue, "shop.nap", 300) for _ in range(2)]
    until(lambda: cycle(runner, redis_client) == 0 and {state(i) for i in ids} == {"STARTED"},
          30, "both running")  # fmt: skip
    until(lambda: cycle(runner, redis_client) == 0 and (w := row(queue)) and w.running_count == 2,
          10, "a beat listing both")  # fmt: skip
    doomed.stop(signal.SIGKILL)
    killed = time.monotonic()
    lost = until(lambda: cycle(runner, redis_client), 30, "the tasks marked LOST")
    assert lost == 2 and time.monotonic() - killed >= LOST_AFTER - 1
    assert {state(i) for i in ids} == {"LOST"}
    worker = row(queue)
    assert worker is not None and worker.status == "gone" and worker.gone_at is not None
    assert open_worker_incidents() == 1


@pytest.mark.timeout(120)
def test_a_clean_stop_is_offline_and_opens_nothing(start_worker, queue, redis_client):
    worker = start_worker(pool="prefork")
    runner = check(redis_client)
    until(lambda: cycle(runner, redis_client) == 0 and row(queue), 20, "its first beat")
    worker.stop(signal.SIGTERM)
    until(lambda: cycle(runner, redis_client) == 0 and row(queue).status == "offline", 20, "bye")
    stopped = row(queue)
    deadline = time.monotonic() + LOST_AFTER + 2  # past the threshold: still offline, not gone
    while time.monotonic() < deadline:
        assert cycle(runner, redis_client) == 0
        time.sleep(0.5)
    assert row(queue).status == "offline" and stopped.stopped_at is not None
    assert open_worker_incidents() == 0


@pytest.mark.timeout(180)
def test_counts_per_minute_add_up_across_a_restart(start_worker, queue, redis_client):
    runner = check(redis_client)
    first = start_worker(pool="prefork")
    for name in ("shop.ok", "shop.ok", "shop.ok", "shop.boom"):
        publish(queue, name)

    def counted(processed: int, failed: int) -> Any:
        cycle(runner, redis_client)
        worker = row(queue)
        return worker and (worker.processed, worker.failed) == (processed, failed) and worker

    before = until(lambda: counted(4, 1), 30, "4 processed, 1 failed")
    first.stop(signal.SIGTERM)
    until(lambda: cycle(runner, redis_client) == 0 and row(queue).status == "offline", 20, "bye")
    start_worker(pool="prefork")
    publish(queue, "shop.ok")
    publish(queue, "shop.ok")
    after = until(lambda: counted(2, 0), 30, "the new run's own counters")
    assert (after.pid, after.started_at) != (before.pid, before.started_at)
    rows = WorkerCounts.objects.filter(hostname=after.hostname)
    assert sum(r.processed for r in rows) == 6 and sum(r.failed for r in rows) == 1


def rabbit_unreachable() -> str | None:
    try:
        with Connection(RABBIT, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:
        return str(exc)[:200]
    return None


@pytest.mark.timeout(120)
def test_a_worker_on_rabbitmq_is_online_with_its_queues(start_worker, queue, redis_client):
    why = rabbit_unreachable()
    if why:
        pytest.skip(f"RabbitMQ at {RABBIT} unreachable ({why})")
    try:
        start_worker(pool="solo", broker=RABBIT)
        worker = until(lambda: drain(redis_client) or row(queue), 20, "its first beat")
        assert worker.status == "online" and worker.queues == [queue]
        seen = HeartbeatProbe()()
        assert seen is not None and seen.consumers(queue) == 1
    finally:
        with Connection(RABBIT, connect_timeout=2) as conn:
            conn.default_channel.queue_delete(queue)

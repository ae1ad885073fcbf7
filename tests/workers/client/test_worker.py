"""A shop's worker process (``tests/workers/client/shop_app.py``: no Django, tasktrail installed
before the app is configured): it records, loads the cancelled ids when it starts, and still starts
when recording cannot be configured."""

from __future__ import annotations

import os
import signal
import socket
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery
from django.conf import settings

from tasktrail import revocations
from tasktrail.events import decode_entry
from tests.processes import Child, spawn

pytestmark = pytest.mark.integration
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"


def stop_warmly(worker: Child) -> None:
    """SIGTERM to the main process only: it waits for its pool to report, then stops it. (A
    signal to the whole group could kill a pool process before the main process has read the
    result it sent, and Celery would then report the task lost.)"""
    worker.process.send_signal(signal.SIGTERM)
    try:
        worker.process.wait(30)
    finally:
        worker.stop()  # the group, if anything is left


def start_worker(broker: str, queue: str, **env: str) -> Child:
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TASKTRAIL_", "OTEL_"))},
        "SHOP_BROKER_URL": broker,
        "SHOP_QUEUE": queue,
        **env,
    }
    environ.pop("DJANGO_SETTINGS_MODULE", None)  # a shop's worker: no Django
    command = [
        sys.executable, "-m", "celery", "-A", "tests.workers.client.shop_app", "worker",
        "-P", "prefork", "-c", "1", "-Q", queue, "-n", f"shop-{queue}@%h", "-l", "info",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    return spawn(command, environ, group=True)


@pytest.fixture
def queue(redis_client: redis.Redis) -> Iterator[str]:
    name = f"shop-{uuid.uuid4().hex[:8]}"
    yield name
    redis_client.delete(name, revocations.KEY)


def publisher(broker: str, queue: str) -> Celery:
    """The shop's web process, without tasktrail: the worker reports what it receives."""
    app = Celery("shop-web", broker=broker, set_as_current=False)
    app.conf.task_default_queue = queue
    return app


def events_of(client: redis.Redis, task_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for _, fields in client.xrange(settings.TASKTRAIL_STREAM):
        events += [e for e in decode_entry(fields)[0] if e["task_id"] == task_id]
    return events


def test_a_shop_worker_skips_cancelled_tasks_and_records_the_others(redis_client, queue):
    cancelled, kept = f"cancelled-{queue}", f"kept-{queue}"
    revocations.remember(redis_client, [cancelled])
    web = publisher(settings.REDIS_URL, queue)
    web.send_task("shop.add", (1, 1), task_id=cancelled)
    web.send_task("shop.add", (2, 2), task_id=kept)

    worker = start_worker(
        settings.REDIS_URL, queue, TASKTRAIL_STREAM=settings.TASKTRAIL_STREAM
    )  # the recorder's Redis is the broker's, its stream from the environment
    try:
        worker.output.wait_for(f"Discarding revoked task: shop.add[{cancelled}]", 60)
        worker.output.wait_for(f"Task shop.add[{kept}] succeeded", 60)
    finally:
        stop_warmly(worker)  # the pool process flushes its buffered events as it leaves
    assert "recording is off" not in worker.output.text
    # "published" too when this test process records its own publishes (the demo app's recorder)
    # The main process writes "received", the pool process the rest: two buffers, either first.
    kinds = [e["kind"] for e in events_of(redis_client, kept) if e["kind"] != "published"]
    assert sorted(kinds) == ["received", "started", "succeeded"]
    kinds = [e["kind"] for e in events_of(redis_client, cancelled) if e["kind"] != "published"]
    assert kinds == ["revoked"]


def test_a_shop_worker_on_rabbitmq_without_a_recorder_url_still_starts(redis_client, queue):
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
    except OSError:
        pytest.skip("RabbitMQ is not reachable at 127.0.0.1:5672")
    web = publisher(RABBITMQ_URL, queue)
    worker = start_worker(RABBITMQ_URL, queue)
    try:
        worker.output.wait_for(" ready.", 60)
        result = web.send_task("shop.add", (3, 4))
        worker.output.wait_for(f"Task shop.add[{result.id}] succeeded", 60)
    finally:
        worker.stop()
        with web.connection_for_write() as connection:
            connection.default_channel.queue_delete(queue)
    log = worker.output.text
    assert log.count("recording is off") == 1, log
    assert "amqp://guest:**@127.0.0.1:5672//" in log
    assert "guest:guest" not in log

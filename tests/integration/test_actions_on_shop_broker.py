"""Operator actions reach the shop's broker, not the event stream's Redis: a retry and a cancel
sent by the service reach a real worker of the shop on RabbitMQ, and on a Redis broker whose keys
carry a prefix (``global_keyprefix``)."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import Group, User
from kombu import Connection

from dashboard.ingest.writer import write_events
from dashboard.models import OperatorAction, TaskRun
from dashboard.services import task_run_cancel, task_run_retry
from tasktrail import revocations
from tests.catalog import register_task
from tests.conftest import event, new_task_id
from tests.processes import Child, spawn

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

RABBIT = os.environ.get("TASKTRAIL_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
TASK = "shopctl.touch"
T0 = 1_750_000_000.0


def unreachable(url: str) -> str | None:
    try:
        with Connection(url, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=4)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@pytest.fixture
def rabbit() -> str:
    why = unreachable(RABBIT)
    if why:
        pytest.skip(f"RabbitMQ at {RABBIT} unreachable ({why})")
    return RABBIT


@pytest.fixture
def queue() -> str:
    return f"ctl-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def shop_worker(queue: str) -> Iterator[Callable[..., Child]]:
    """Start a worker of the shop's own app (tests/integration/shop_broker_app.py) on ``queue``."""
    children: list[Child] = []

    def start(url: str, options: dict[str, Any] | None = None) -> Child:
        env = {
            **os.environ,
            "SHOPCTL_BROKER_URL": url,
            "SHOPCTL_TRANSPORT_OPTIONS": json.dumps(options or {}),
            "SHOPCTL_QUEUE": queue,
        }
        command = [
            sys.executable, "-m", "celery", "-A", "tests.integration.shop_broker_app", "worker",
            "-P", "solo", "-Q", queue, "-n", f"{queue}@%h", "-l", "info",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        child = spawn(command, env, group=True)
        children.append(child)
        child.output.wait_for(" ready.", 60)
        return child

    yield start
    for child in children:
        child.stop(signal.SIGTERM)


@pytest.fixture
def stream() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


def operator() -> User:
    user = User.objects.create_user(f"operator-{new_task_id()}")
    user.groups.add(Group.objects.get(name="operator"))
    return User.objects.get(pk=user.pk)


def failed_touch(queue: str, marker: Path) -> str:
    """A failed ``shopctl.touch`` on ``queue``, as the monitor recorded it; the catalog knows it."""
    register_task(TASK, queue=queue)
    task_id = new_task_id()
    published = {"name": TASK, "queue": queue, "args": json.dumps([str(marker), "again"]),
                 "kwargs": "{}", "published_at": T0}  # fmt: skip
    write_events(
        [
            event("published", task_id, T0, **published),
            event("failed", task_id, T0 + 1, exc_type="OSError", exc_message="disk full"),
        ]
    )
    return task_id


def queued_touch(queue: str) -> str:
    task_id = new_task_id()
    write_events([event("published", task_id, T0, name=TASK, queue=queue, published_at=T0)])
    return task_id


def ran(marker: Path, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        assert time.monotonic() < deadline, f"the worker never ran the task ({marker} missing)"
        time.sleep(0.1)
    return json.loads(marker.read_text())


def delete_queue(url: str, queue: str) -> None:
    with Connection(url, connect_timeout=2) as conn:
        conn.default_channel.queue_delete(queue)


def test_retry_reaches_a_worker_on_rabbitmq_and_runs(
    rabbit, queue, shop_worker, settings, tmp_path
):
    settings.TASKTRAIL_BROKER_URL = rabbit
    settings.TASKTRAIL_BROKER_TRANSPORT_OPTIONS = {}
    worker = shop_worker(rabbit)
    try:
        marker = tmp_path / "ran"
        old = failed_touch(queue, marker)
        result = task_run_retry(user=operator(), task_id=old, reason="disk cleaned")
        action = OperatorAction.objects.get(pk=result.action.pk)
        assert (action.outcome, result.failed) == ("done", {})
        new = result.new_task_ids[old]
        assert ran(marker) == {"text": "again", "id": new, "retry_of": old}
        worker.output.wait_for(f"{TASK}[{new}] succeeded", 30)
        assert TaskRun.objects.get(task_id=old).retried_as == new
    finally:
        delete_queue(rabbit, queue)


def test_cancel_reaches_a_running_worker_on_rabbitmq(rabbit, queue, shop_worker, settings, stream):
    settings.TASKTRAIL_BROKER_URL = rabbit
    settings.TASKTRAIL_BROKER_TRANSPORT_OPTIONS = {}
    worker = shop_worker(rabbit)
    try:
        task_id = queued_touch(queue)
        mark = worker.output.mark()
        result = task_run_cancel(user=operator(), task_id=task_id, reason="order cancelled")
        assert OperatorAction.objects.get(pk=result.action.pk).outcome == "done"
        assert result.done == [task_id]
        # The worker's own log: the broadcast reached it over the fanout exchange.
        worker.output.wait_for(f"Tasks flagged as revoked: {task_id}", 30, after=mark)
        assert task_id in revocations.remembered(stream)  # and workers started later know too
    finally:
        stream.zrem(revocations.KEY, task_id)
        delete_queue(rabbit, queue)


def test_retry_on_a_prefixed_redis_broker_lands_under_the_prefix_and_runs(
    queue, shop_worker, settings, stream, tmp_path
):
    prefix = f"shop-{uuid.uuid4().hex[:8]}:"
    options = {"global_keyprefix": prefix}
    settings.TASKTRAIL_BROKER_URL = settings.REDIS_URL
    settings.TASKTRAIL_BROKER_TRANSPORT_OPTIONS = options
    try:
        marker = tmp_path / "ran"
        old = failed_touch(queue, marker)
        result = task_run_retry(user=operator(), task_id=old, reason="disk cleaned")
        new = result.new_task_ids[old]
        [message] = [json.loads(m) for m in stream.lrange(f"{prefix}{queue}", 0, -1)]
        assert message["headers"]["id"] == new
        assert message["headers"]["tasktrail_retry_of"] == old
        assert stream.llen(queue) == 0  # not under the bare queue name
        worker = shop_worker(settings.REDIS_URL, options)
        assert ran(marker) == {"text": "again", "id": new, "retry_of": old}
        # Cancel goes over the prefixed pidbox channel (Redis PUBLISH) to the same worker.
        pending = queued_touch(queue)
        mark = worker.output.mark()
        task_run_cancel(user=operator(), task_id=pending, reason="order cancelled")
        worker.output.wait_for(f"Tasks flagged as revoked: {pending}", 30, after=mark)
    finally:
        stream.delete(*stream.scan_iter(match=f"{prefix}*", count=1000), "__nothing__")

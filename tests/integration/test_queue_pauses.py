"""Queue pause, resume and purge through the real path: the service, the shop's broker (Redis with a
``global_keyprefix``, and RabbitMQ), real prefork workers of a shop app with tasktrail installed.

A paused queue's tasks wait, on running workers and on a worker started while it is paused, while
the worker's other queue still runs; resume brings them back only on the workers that had the
queue; a worker that missed the broadcast converges from the shared set; purge is refused to an
operator and to a wrong typed name, and done for an admin, the count audited.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from django.conf import settings
from django.contrib.auth.models import Group, User
from kombu import Connection

from dashboard.models import OperatorAction, QueuePause
from dashboard.services_queues import queue_pause, queue_purge, queue_resume
from tasktrail import queue_pauses
from tests.processes import Child, spawn

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(240),
]

RABBIT = os.environ.get("TASKTRAIL_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
TASK = "pauseshop.touch"
LOGS: dict[str, Any] = {}


@dataclass
class Broker:
    url: str
    options: dict[str, Any]
    prefix: str = ""  # Redis: the global_keyprefix


def rabbit_unreachable() -> str | None:
    try:
        with Connection(RABBIT, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=4)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@pytest.fixture(params=["redis-prefixed", "rabbitmq"])
def broker(request: Any, settings: Any, redis_client: redis.Redis) -> Iterator[Broker]:
    if request.param == "rabbitmq":
        why = rabbit_unreachable()
        if why:
            pytest.skip(f"RabbitMQ at {RABBIT} not answering ({why})")
        found = Broker(RABBIT, {})
    else:
        prefix = f"pshop-{uuid.uuid4().hex[:8]}:"
        found = Broker(settings.REDIS_URL, {"global_keyprefix": prefix}, prefix)
    settings.TASKTRAIL_BROKER_URL = found.url
    settings.TASKTRAIL_BROKER_TRANSPORT_OPTIONS = found.options
    yield found
    if found.prefix:
        keys = list(redis_client.scan_iter(match=f"{found.prefix}*", count=1000))
        if keys:
            redis_client.delete(*keys)


@pytest.fixture
def queues(broker: Broker) -> Iterator[list[str]]:
    names = [f"pq-{uuid.uuid4().hex[:10]}" for _ in range(3)]
    yield names
    if not broker.prefix:
        with Connection(broker.url, connect_timeout=2) as conn:
            for name in names:
                try:
                    channel: Any = conn.default_channel
                    channel.queue_delete(name)
                except Exception:
                    conn.close()
                    conn.connect()


@pytest.fixture
def start_worker(broker: Broker) -> Iterator[Callable[[str, str], Child]]:
    children: list[Child] = []

    def start(name: str, worker_queues: str) -> Child:
        env = {
            **os.environ,
            "PAUSESHOP_BROKER_URL": broker.url,
            "PAUSESHOP_TRANSPORT_OPTIONS": json.dumps(broker.options),
            "TASKTRAIL_RECORDER_URL": settings.REDIS_URL,
            "TASKTRAIL_STREAM": settings.TASKTRAIL_STREAM,
            "TASKTRAIL_PAUSE_REFRESH_SECONDS": "1",
        }
        command = [
            sys.executable, "-m", "celery", "-A", "tests.integration.pause_shop_app", "worker",
            "-P", "prefork", "-c", "1", "-Q", worker_queues, "-n", f"{name}@%h", "-l", "info",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        child = spawn(command, env, group=True)
        children.append(child)
        LOGS[name] = child.output
        try:
            child.output.wait_for(" ready.", 60)
        except AssertionError:
            child.stop(signal.SIGKILL)
            raise
        return child

    yield start
    for child in children:
        child.stop(signal.SIGTERM)


@pytest.fixture
def publisher(broker: Broker) -> Iterator[Celery]:
    app = Celery("pauseshop-publisher", broker=broker.url, set_as_current=False)
    app.conf.broker_transport_options = broker.options
    yield app
    app.close()


def user(role: str) -> User:
    person = User.objects.create_user(f"{role}-{uuid.uuid4().hex[:8]}")
    person.groups.add(Group.objects.get(name=role))
    return User.objects.get(pk=person.pk)


def host(name: str) -> str:
    return f"{name}@{socket.gethostname()}"


def publish(app: Celery, queue: str, marker: Path) -> None:
    app.send_task(TASK, args=[str(marker)], queue=queue)


def waiting(broker: Broker, queue: str) -> int:
    """Messages waiting in ``queue`` as the broker counts them (Redis: the prefixed list and its
    priority sub-lists)."""
    if broker.prefix:
        client = redis.Redis.from_url(broker.url)
        try:
            names = [f"{broker.prefix}{queue}"]
            names += [f"{broker.prefix}{queue}\x06\x16{p}" for p in range(1, 10)]
            return sum(int(client.llen(name)) for name in names)
        finally:
            client.close()
    with Connection(broker.url, connect_timeout=2) as conn:
        channel: Any = conn.default_channel
        return int(channel.queue_declare(queue, passive=True).message_count)


def ran(marker: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        assert time.monotonic() < deadline, f"the task never ran ({marker.name} missing)"
        time.sleep(0.1)


def active_queues(app: Celery, name: str, timeout: float = 20.0) -> list[str]:
    """The queues a worker consumes, as it answers. Asked again until it answers: on Redis a worker
    that has just said "ready" may not have subscribed to the broadcast channel yet."""
    deadline = time.monotonic() + timeout
    while True:
        replies = app.control.inspect(destination=[host(name)], timeout=2).active_queues() or {}
        if host(name) in replies:
            return sorted(q["name"] for q in replies[host(name)])
        assert time.monotonic() < deadline, f"{host(name)} did not answer: {LOGS[name].tail()}"


def test_pause_holds_a_queue_on_running_and_new_workers_and_resume_runs_it(
    broker, queues, start_worker, publisher, tmp_path
):
    from workers.control import control_app

    paused, other, elsewhere = queues
    both = start_worker("pa", f"{paused},{other}")
    start_worker("pc", elsewhere)  # never consumed the paused queue
    operator = user("operator")

    mark = both.output.mark()
    result = queue_pause(user=operator, queue=paused, reason="payment provider down")
    assert result.action.outcome == "done", result.message
    assert result.answers[host("pa")] == "stopping"
    assert result.answers[host("pc")] == "not consuming"
    both.output.wait_for(f"queue {paused} paused: no longer consuming it", 30, after=mark)
    assert QueuePause.objects.get(queue=paused).paused_by == operator.username

    held, other_ran = tmp_path / "held", tmp_path / "other"
    publish(publisher, paused, held)  # first: a worker consuming it would take it first
    publish(publisher, other, other_ran)
    ran(other_ran)  # the worker's other queue still runs
    assert not held.exists()
    assert waiting(broker, paused) == 1

    # A worker started while the queue is paused does not consume it.
    late = start_worker("pb", paused)
    assert f"queue {paused} is paused: not consuming it" in late.output.text
    app = control_app()
    assert active_queues(app, "pb") == []
    assert active_queues(app, "pa") == [other]
    assert not held.exists()
    assert waiting(broker, paused) == 1

    marks = {"pa": both.output.mark(), "pb": late.output.mark()}
    result = queue_resume(user=operator, queue=paused, reason="provider back")
    assert result.action.outcome == "done", result.message
    assert result.answers[host("pa")] == result.answers[host("pb")] == "resuming"
    assert result.answers[host("pc")] == "not held"
    ran(held)
    both.output.wait_for(f"queue {paused} resumed", 30, after=marks["pa"])
    late.output.wait_for(f"queue {paused} resumed", 30, after=marks["pb"])
    assert active_queues(app, "pa") == sorted([paused, other])
    assert active_queues(app, "pb") == [paused]
    assert active_queues(app, "pc") == [elsewhere]  # resume added nothing here
    assert not QueuePause.objects.filter(queue=paused).exists()

    kinds = list(
        OperatorAction.objects.filter(scope=f"queue {paused}")
        .order_by("at", "id")
        .values_list("kind", "outcome", "username")
    )
    assert kinds == [
        ("pause_queue", "done", operator.username),
        ("resume_queue", "done", operator.username),
    ]


def test_a_worker_that_missed_the_broadcast_converges_from_the_shared_set(
    broker, queues, start_worker, redis_client
):
    if not broker.prefix:
        pytest.skip("the shared set is the same on every broker: checked once, on Redis")
    paused, other, _ = queues
    worker = start_worker("pd", f"{paused},{other}")
    stream = settings.TASKTRAIL_STREAM
    mark = worker.output.mark()
    # Written as the dashboard writes it, with no broadcast: the worker's re-read finds it.
    queue_pauses.remember(
        redis_client, stream, queue_pauses.Pause(paused, "ops", time.time(), "no broadcast")
    )
    worker.output.wait_for(f"queue {paused} paused: no longer consuming it", 30, after=mark)
    mark = worker.output.mark()
    queue_pauses.forget(redis_client, stream, paused)
    worker.output.wait_for(f"queue {paused} resumed", 30, after=mark)
    assert f"queue {other} paused" not in worker.output.text


def test_purge_is_for_admins_who_type_the_name_and_the_count_is_audited(
    broker, queues, publisher, tmp_path
):
    queue = queues[0]
    for n in range(3):
        publish(publisher, queue, tmp_path / f"never-{n}")
    assert waiting(broker, queue) == 3

    refused = queue_purge(user=user("operator"), queue=queue, confirm_name=queue, reason="x")
    assert not refused.permitted
    assert refused.action.outcome == "refused"
    admin = user("admin")
    wrong = queue_purge(user=admin, queue=queue, confirm_name=queue.upper(), reason="cleanup")
    assert (wrong.action.outcome, wrong.purged) == ("refused", None)
    assert waiting(broker, queue) == 3

    done = queue_purge(user=admin, queue=queue, confirm_name=queue, reason="cleanup")
    assert (done.action.outcome, done.purged) == ("done", 3), done.message
    assert "3 messages deleted" in done.message
    assert waiting(broker, queue) == 0
    audit = OperatorAction.objects.get(pk=done.action.pk)
    assert (audit.kind, audit.scope, audit.username) == (
        "purge_queue",
        f"queue {queue}",
        admin.username,
    )

"""Queues on a real RabbitMQ: depth and consumers by passive declares, a queue that does not exist,
and the management API's figures.

The management plugin is not assumed to run everywhere: one test reads the real plugin when it
answers on 127.0.0.1:15672 (and skips saying so when it does not); the others answer from a local
HTTP server that speaks the API's ``/api/queues/<vhost>`` as RabbitMQ documents it, to show what a
refusing or odd API does."""

from __future__ import annotations

import base64
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from kombu import Connection

from tests.processes import Child, spawn
from workers.broker import IDLE_SINCE, LIST, OLDEST_PUBLISHED, UNACKED, reader_for
from workers.broker_amqp import AmqpReader, ApiError, ManagementApi, parse_idle_since

RABBIT = os.environ.get("TASKTRAIL_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
API_SECRET = "api-pass-0451"
REAL_API = os.environ.get("TASKTRAIL_TEST_RABBITMQ_API", "http://guest:guest@127.0.0.1:15672/api/")


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
        pytest.skip(f"RabbitMQ at {RABBIT} is not answering ({why})")
    return RABBIT


@pytest.fixture
def queue(rabbit: str) -> Iterator[str]:
    """A queue of this test's own (Celery declares it, with a direct exchange named after it),
    deleted afterwards."""
    name = f"tt-depth-{uuid.uuid4().hex[:12]}"
    yield name
    with Connection(rabbit, connect_timeout=2) as conn:
        channel: Any = conn.channel()
        channel.queue_delete(name)
        channel.exchange_delete(name)


def publish(url: str, queue: str, count: int, folder: Path) -> None:
    """``count`` tasks of the shop's app (shopctl.touch) on ``queue``, as the shop publishes."""
    app = Celery("shop-publisher", broker=url, set_as_current=False, fixups=[])
    app.conf.update(broker_connection_timeout=2, task_serializer="json")
    with app.connection_for_write() as conn:
        for n in range(count):
            app.send_task(
                "shopctl.touch", args=[str(folder / f"{n}.json"), "hi"], queue=queue,
                connection=conn,
            )  # fmt: skip


@pytest.fixture
def worker(rabbit: str) -> Iterator[Callable[[str], Child]]:
    children: list[Child] = []

    def start(queue: str) -> Child:
        env = {**os.environ, "SHOPCTL_BROKER_URL": rabbit, "SHOPCTL_QUEUE": queue}
        command = [
            sys.executable, "-m", "celery", "-A", "tests.integration.shop_broker_app", "worker",
            "-P", "solo", "-Q", queue, "-n", f"{queue}@%h", "-l", "info", "--prefetch-multiplier",
            "1", "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        child = spawn(command, env, group=True)
        children.append(child)
        child.output.wait_for(" ready.", 60)
        return child

    yield start
    for child in children:
        child.stop(signal.SIGTERM)


def wait_until(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f}s"
        time.sleep(0.2)


def test_depth_and_consumers_from_the_broker(rabbit, queue, worker, tmp_path):
    publish(rabbit, queue, 7, tmp_path)
    reader = reader_for(rabbit, {})
    assert isinstance(reader, AmqpReader)
    try:
        missing = f"tt-missing-{uuid.uuid4().hex[:8]}"
        # a missing queue first: its NOT_FOUND closes the channel, the next queue still reads
        reading = reader.read([missing, queue])
        assert reading.error == ""
        assert reading.queues[missing].absent and reading.queues[missing].depth is None
        assert (reading.queues[queue].depth, reading.queues[queue].consumers) == (7, 0)
        assert reading.unknown == (UNACKED, IDLE_SINCE, OLDEST_PUBLISHED, LIST)
        assert reader.list_queues() is None  # without the management API it cannot list

        worker(queue)
        consumed = wait_until(
            "consumer on the queue",
            lambda: (r := reader.read([queue]).queues[queue]).consumers == 1 and r,
        )
        assert consumed.consumers == 1
        wait_until("drained queue", lambda: reader.read([queue]).queues[queue].depth == 0)
        assert len(list(tmp_path.glob("*.json"))) == 7  # the worker ran them all
    finally:
        reader.close()
    # nothing was declared by reading: the missing queue is still missing
    with Connection(rabbit, connect_timeout=2) as conn, pytest.raises(conn.channel_errors):
        channel: Any = conn.channel()
        channel.queue_declare(queue=missing, passive=True)


def test_an_unreachable_rabbitmq_is_unknown_with_its_password_masked():
    reader = reader_for("amqp://shop:amqp-secret-77@127.0.0.1:1//", {})
    started = time.monotonic()
    reading = reader.read(["orders"])
    assert time.monotonic() - started < 15  # bounded connection attempts, not kombu's forever
    assert reading.queues["orders"].depth is None
    assert reading.error and "amqp-secret-77" not in reading.error + reading.where


class FakeManagementApi(BaseHTTPRequestHandler):
    """``GET /api/queues/<vhost>?columns=...`` as RabbitMQ's management plugin answers it."""

    rows: list[dict[str, Any]] = []
    seen: list[tuple[str, str]] = []

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization", "")))
        expected = "Basic " + base64.b64encode(f"monitor:{API_SECRET}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.end_headers()
            return
        body = json.dumps(self.rows).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeManagementApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeManagementApi.seen = []
    yield f"http://monitor:{API_SECRET}@127.0.0.1:{server.server_address[1]}/api/"
    server.shutdown()
    server.server_close()


def test_the_management_api_adds_unacked_idle_since_and_the_list(rabbit, queue, api, tmp_path):
    publish(rabbit, queue, 2, tmp_path)
    FakeManagementApi.rows = [
        {"name": queue, "messages_ready": 2, "messages_unacknowledged": 3, "consumers": 0,
         "idle_since": "2026-12-07T07:22:00.000+00:00"},
        {"name": "celeryev.0b1c", "messages_ready": 0},
        {"name": "w1@h.celery.pidbox", "messages_ready": 0},
        {"name": "amq.gen-xyz", "messages_ready": 0},
        {"name": 42},  # not a queue row: left out
    ]  # fmt: skip
    reader = reader_for(rabbit, {}, rabbitmq_api=api)
    try:
        assert reader.list_queues() == [queue]
        reading = reader.read([queue])
    finally:
        reader.close()
    got = reading.queues[queue]
    assert (got.depth, got.consumers, got.unacked) == (2, 0, 3)  # depth: the passive declare
    assert got.idle_since == parse_idle_since("2026-12-07T07:22:00+00:00")
    assert reading.unknown == (OLDEST_PUBLISHED,)
    path, auth = FakeManagementApi.seen[-1]
    assert path.startswith("/api/queues/%2F?columns=")  # the broker URL's vhost "/"
    assert auth.startswith("Basic ") and API_SECRET not in path


def test_a_management_api_refusing_is_a_note_without_its_password(rabbit, queue, api, tmp_path):
    publish(rabbit, queue, 1, tmp_path)
    wrong = api.replace(API_SECRET, "wrong-pass-99")
    reader = reader_for(rabbit, {}, rabbitmq_api=wrong)
    try:
        assert reader.list_queues() is None
        reading = reader.read([queue])
    finally:
        reader.close()
    assert reading.queues[queue].depth == 1 and reading.queues[queue].unacked is None
    assert reading.error == ""
    assert reading.notes and "401" in reading.notes[0]
    assert "wrong-pass-99" not in " ".join(reading.notes)


def test_the_real_management_api_counts_a_message_held_unacknowledged(rabbit, queue, tmp_path):
    try:
        ManagementApi(REAL_API, "/").queues()
    except ApiError as exc:
        pytest.skip(f"RabbitMQ's management plugin is not answering: {exc}")
    publish(rabbit, queue, 3, tmp_path)
    reader = reader_for(rabbit, {}, rabbitmq_api=REAL_API)
    with Connection(rabbit, connect_timeout=2) as conn:
        channel: Any = conn.channel()
        held = channel.basic_get(queue, no_ack=False)  # taken, not acknowledged: "unacked"
        assert held is not None
        try:
            # the API's figures come from its statistics, refreshed every few seconds
            got = wait_until(
                "the API's count of the held message",
                lambda: (q := reader.read([queue]).queues[queue]).unacked == 1 and q,
                timeout=30,
            )
            assert queue in (reader.list_queues() or [])
        finally:
            reader.close()
            channel.basic_reject(held.delivery_tag, requeue=True)
    assert (got.depth, got.consumers) == (2, 0)  # depth: ready messages, from the passive declare


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-07T07:22:00.000+00:00", 1796628120.0),
        ("2026-12-07 07:22:00", 1796628120.0),
        ("2026-12-07 7:22:00", 1796628120.0),
        ("", None),
        (None, None),
        ("yesterday", None),
        (12, None),
    ],
)
def test_idle_since_formats(text, expected):
    assert parse_idle_since(text) == expected

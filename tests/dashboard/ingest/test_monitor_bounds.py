"""One hostile entry costs the monitor a bounded amount of work, dead letters and log lines."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import msgpack
import pytest
from django.conf import settings

from dashboard.ingest.monitor import Monitor
from dashboard.ingest.stream import StreamConsumer
from dashboard.models import TaskRun
from tasktrail.events import MAX_ENTRY_EVENTS, MAX_REJECTS_KEPT, encode_batch, make_event
from tests.conftest import new_task_id, story_success

pytestmark = pytest.mark.django_db
T = 1_750_000_000.0


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def monitor_log() -> Iterator[list[str]]:
    handler = Lines()
    logger = logging.getLogger("tasktrail.monitor")
    logger.addHandler(handler)
    yield handler.lines
    logger.removeHandler(handler)


def drain(client) -> Monitor:
    monitor = Monitor(StreamConsumer(client, settings.TASKTRAIL_STREAM, consumer="bounds"))
    monitor.run(drain=True)
    return monitor


def dead_letters(client) -> list[dict[bytes, bytes]]:
    return [fields for _, fields in client.xrange(settings.TASKTRAIL_STREAM + ":dead")]


def test_an_entry_of_100k_tiny_items_is_a_few_dead_letters_and_log_lines(redis_client, monitor_log):
    count = 100_000
    packed = msgpack.Packer().pack_array_header(count) + b"\x80" * count  # 100 KB of empty maps
    redis_client.xadd(settings.TASKTRAIL_STREAM + ":dead", {"earlier": "letter"})
    redis_client.xadd(settings.TASKTRAIL_STREAM, {b"e": packed})
    good = new_task_id()
    redis_client.xadd(settings.TASKTRAIL_STREAM, encode_batch(story_success(good)))

    monitor = drain(redis_client)

    assert TaskRun.objects.get(task_id=good).state == "SUCCESS"
    assert monitor.stats.rejected == count
    dead = dead_letters(redis_client)
    assert dead[0] == {b"earlier": b"letter"}  # the dead letters before it are still there
    letters = dead[1:]
    assert len(letters) == MAX_REJECTS_KEPT + 2
    assert sum(int(f.get(b"count", 1)) for f in letters) == count
    assert letters[-1][b"count"] == str(count - MAX_ENTRY_EVENTS).encode()
    assert b"past the cap of 4000 per entry" in letters[-1][b"reason"]
    malformed = [line for line in monitor_log if "malformed event" in line]
    assert len(malformed) == MAX_REJECTS_KEPT + 2


def test_an_entry_past_the_cap_keeps_its_first_events(redis_client):
    ids = [new_task_id() for _ in range(MAX_ENTRY_EVENTS + 3)]
    events = [make_event("received", task_id, T, hostname="w@h") for task_id in ids]
    redis_client.xadd(settings.TASKTRAIL_STREAM, encode_batch(events))
    monitor = drain(redis_client)
    assert (monitor.stats.events, monitor.stats.rejected) == (MAX_ENTRY_EVENTS, 3)
    assert TaskRun.objects.filter(task_id__in=ids).count() == MAX_ENTRY_EVENTS
    [letter] = dead_letters(redis_client)
    assert letter[b"count"] == b"3"


def test_a_dead_letter_never_holds_a_whole_huge_entry(redis_client):
    huge = b"x" * (8 * 1024 * 1024)
    redis_client.xadd(settings.TASKTRAIL_STREAM, {b"other": huge, b"more": huge})
    monitor = drain(redis_client)
    assert monitor.stats.rejected == 1
    [letter] = dead_letters(redis_client)
    assert b"no 'e' field" in letter[b"reason"] and len(letter[b"raw"]) < 20_000

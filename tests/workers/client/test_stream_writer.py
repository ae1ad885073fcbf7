from __future__ import annotations

import os
import socket

from django.conf import settings

from tasktrail.events import decode_entry, make_event
from tasktrail.stream_writer import StreamWriter

T = 1_750_000_000.0


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"  # nothing listens there once the socket is closed


def read_events(client, stream):
    events = []
    for _, fields in client.xrange(stream):
        decoded, rejected = decode_entry(fields)
        assert rejected == []
        events += decoded
    return events


def test_buffered_events_are_written_as_one_entry(redis_client):
    stream = settings.TASKTRAIL_STREAM
    writer = StreamWriter(settings.REDIS_URL, stream, flush_interval=60)
    for i in range(5):
        writer.emit(make_event("received", f"t{i}", T))
    assert writer.flush() is True
    assert redis_client.xlen(stream) == 1
    assert [e["task_id"] for e in read_events(redis_client, stream)] == [f"t{i}" for i in range(5)]
    writer.close()


def test_background_thread_flushes_on_its_timer(redis_client):
    stream = settings.TASKTRAIL_STREAM
    writer = StreamWriter(settings.REDIS_URL, stream, flush_interval=0.01)
    writer.emit(make_event("received", "t1", T))
    thread = writer._thread
    assert thread is not None
    for _ in range(500):
        if redis_client.xlen(stream):
            break
        thread.join(0.01)
    assert redis_client.xlen(stream) == 1
    writer.close()


def test_unreachable_redis_keeps_events_then_counts_what_is_lost():
    writer = StreamWriter(closed_port_url(), "s", flush_interval=60, max_buffered=3)
    for i in range(5):
        writer.emit(make_event("received", f"t{i}", T))  # never raises
    assert writer.flush() is False
    assert writer.stats.dropped == 2  # beyond max_buffered
    writer.close()
    assert writer.stats.dropped == 5  # the 3 kept could not be written before exit
    assert writer.stats.written == 0


def test_failed_batch_is_written_once_redis_answers(redis_client):
    stream = settings.TASKTRAIL_STREAM
    writer = StreamWriter(closed_port_url(), stream, flush_interval=60)
    writer.emit(make_event("received", "t1", T))
    assert writer.flush() is False
    writer.redis_url = settings.REDIS_URL  # Redis is back
    writer._backoff_until = 0.0
    writer.emit(make_event("received", "t2", T))
    assert writer.flush() is True
    assert [e["task_id"] for e in read_events(redis_client, stream)] == ["t1", "t2"]
    writer.close()


def test_forked_child_starts_empty_and_writes_its_own_events(redis_client):
    stream = settings.TASKTRAIL_STREAM
    writer = StreamWriter(settings.REDIS_URL, stream, flush_interval=60)
    writer.emit(make_event("received", "parent", T))
    pid = os.fork()
    if pid == 0:  # child: its buffer must not hold the parent's event
        code = 0
        try:
            writer.emit(make_event("received", "child", T))
            code = 0 if writer.flush() and writer.stats.written == 1 else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    writer.flush()
    assert sorted(e["task_id"] for e in read_events(redis_client, stream)) == ["child", "parent"]
    writer.close()

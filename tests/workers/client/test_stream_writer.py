from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest
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


# -- the stream's length cap -----------------------------------------------------------------------


def write_entries(writer: StreamWriter, count: int) -> None:
    for i in range(count):
        writer.emit(make_event("received", f"t{i}", T))
        assert writer.flush() is True  # one stream entry per flush


def trimmed_hash(client, stream: str) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in client.hgetall(stream + ":trimmed").items()}


def test_trimming_past_the_cap_counts_every_entry_it_drops(redis_client):
    stream = settings.TASKTRAIL_STREAM
    redis_client.xgroup_create(stream, "tasktrail-monitor", id="0", mkstream=True)
    writer = StreamWriter(settings.REDIS_URL, stream, flush_interval=60, max_entries=50)
    write_entries(writer, 120)
    # a monitor read some (pending, not acknowledged): still unfinished, so counted if trimmed
    redis_client.xreadgroup("tasktrail-monitor", "m1", {stream: ">"}, count=30)
    write_entries(writer, 380)
    counted = trimmed_hash(redis_client, stream)
    length = redis_client.xlen(stream)
    assert int(counted["entries"]) > 0
    assert int(counted["entries"]) + length == 500  # nothing left the stream uncounted
    assert writer.stats.trimmed == int(counted["entries"])
    assert length < 50 + 2 * 100  # an approximate trim keeps up to one node over the cap
    assert counted["cap"] == "50" and float(counted["at"]) > 0
    writer.close()


def test_no_trim_below_the_cap_nor_with_the_cap_off(redis_client):
    stream = settings.TASKTRAIL_STREAM
    write_entries(StreamWriter(settings.REDIS_URL, stream, flush_interval=60, max_entries=0), 300)
    write_entries(StreamWriter(settings.REDIS_URL, stream, flush_interval=60, max_entries=1000), 5)
    assert redis_client.xlen(stream) == 305
    assert "entries" not in trimmed_hash(redis_client, stream)


@pytest.fixture
def restricted_url(redis_client) -> Iterator[Callable[[str], str]]:
    """A Redis user refused the commands given (an ACL), as a managed Redis may be."""
    made: list[str] = []

    def url_without(commands: str) -> str:
        user = f"tt-test-{os.getpid()}-{len(made)}"
        rules = ["on", ">pw", "~*", "&*", "+@all", *(f"-{c}" for c in commands.split())]
        redis_client.acl_setuser(user, reset=True)
        redis_client.execute_command("ACL", "SETUSER", user, *rules)
        made.append(user)
        parts = urlsplit(settings.REDIS_URL)
        return parts._replace(netloc=f"{user}:pw@{parts.hostname}:{parts.port}").geturl()

    yield url_without
    for user in made:
        redis_client.acl_deluser(user)


def test_a_redis_refusing_xtrim_never_raises_into_the_shop(redis_client, restricted_url, caplog):
    stream = settings.TASKTRAIL_STREAM
    url = restricted_url("xtrim eval evalsha")
    writer = StreamWriter(url, stream, flush_interval=60, max_entries=10)
    write_entries(writer, 150)  # every flush succeeds: the events are written, the cap is not
    assert redis_client.xlen(stream) == 150
    assert writer.stats.written == 150 and writer.stats.failed_trims >= 1
    assert "cannot trim" in caplog.text
    writer.close()


def test_without_scripts_the_trim_is_still_counted(redis_client, restricted_url):
    stream = settings.TASKTRAIL_STREAM
    writer = StreamWriter(restricted_url("eval evalsha"), stream, flush_interval=60, max_entries=20)
    write_entries(writer, 400)
    counted = int(trimmed_hash(redis_client, stream)["entries"])
    assert counted > 0 and counted + redis_client.xlen(stream) == 400
    writer.close()


def test_the_cap_comes_from_install_then_the_environment():
    from celery import Celery

    from tasktrail.config import ConfigError, resolve

    app = Celery("shop", broker="redis://127.0.0.1:6379/0", set_as_current=False)
    assert resolve(app, environ={}).stream_max_entries == 1_000_000
    env = {"TASKTRAIL_STREAM_MAX_ENTRIES": "5000"}
    assert resolve(app, environ=env).stream_max_entries == 5000
    assert resolve(app, {"stream_max_entries": 0}, environ=env).stream_max_entries == 0
    for bad in ("lots", "-1", "1e6"):
        with pytest.raises(ConfigError, match="TASKTRAIL_STREAM_MAX_ENTRIES"):
            resolve(app, environ={"TASKTRAIL_STREAM_MAX_ENTRIES": bad})


def test_trimming_warns_once_a_minute_not_at_every_trim(redis_client, caplog):
    writer = StreamWriter(settings.REDIS_URL, settings.TASKTRAIL_STREAM, flush_interval=60,
                          max_entries=20)  # fmt: skip
    write_entries(writer, 600)
    assert writer.stats.trimmed > 100  # several trims
    assert caplog.text.count("over its cap of 20") == 1
    writer.close()


# -- bad events never wedge the writer ------------------------------------------------------------


def raw_event(task_id: str, **fields) -> dict:
    """An event as make_event would never build it (a value msgpack cannot pack)."""
    return {"v": 1, "kind": "received", "task_id": task_id, "ts": T, **fields}


@pytest.mark.parametrize(
    "bad",
    [2**70, "lone \udce9 surrogate", object()],
    ids=["int-out-of-range", "lone-surrogate", "object"],
)
def test_an_event_that_cannot_be_packed_is_dropped_alone_and_the_rest_written(
    redis_client, caplog, bad
):
    stream = settings.TASKTRAIL_STREAM
    writer = StreamWriter(settings.REDIS_URL, stream, flush_interval=60)
    writer.emit(make_event("received", "before", T))
    writer.emit(raw_event("bad", traceparent=bad))
    writer.emit(make_event("received", "after", T))
    assert writer.flush() is True  # not retried: nothing is left waiting
    assert [e["task_id"] for e in read_events(redis_client, stream)] == ["before", "after"]
    assert (writer.stats.invalid, writer.stats.written, writer.stats.failed_flushes) == (1, 2, 0)
    writer.emit(make_event("received", "later", T))
    assert writer.flush() is True
    writer.close()
    assert [e["task_id"] for e in read_events(redis_client, stream)][-1] == "later"
    assert "cannot be packed" in caplog.text and "Not a Redis problem" in caplog.text
    assert "Redis did not take" not in caplog.text and "lost at shutdown" not in caplog.text
    counters = redis_client.hgetall(stream + ":recorder")
    assert counters[b"invalid"] == b"1" and b"dropped" not in counters


def test_bad_events_are_logged_once_a_minute_not_each(redis_client, caplog):
    writer = StreamWriter(settings.REDIS_URL, settings.TASKTRAIL_STREAM, flush_interval=60)
    for i in range(50):
        writer.emit(raw_event(f"bad{i}", pid=2**70))
        writer.emit(make_event("received", f"good{i}", T))
        assert writer.flush() is True
    assert (writer.stats.invalid, writer.stats.written) == (50, 50)
    assert caplog.text.count("cannot be packed") == 1
    writer.close()


def test_redis_errors_are_told_apart_from_bad_events(caplog):
    writer = StreamWriter(closed_port_url(), "s", flush_interval=60)
    writer.emit(raw_event("bad", retries=2**70))
    writer.emit(make_event("received", "good", T))
    assert writer.flush() is False
    writer.close()
    assert writer.stats.invalid == 1 and writer.stats.dropped == 1  # the good one, Redis down
    assert "Redis did not take the events" in caplog.text
    assert "1 events lost at shutdown: Redis did not take them (ConnectionError" in caplog.text


def test_a_batch_too_big_for_one_entry_is_split_and_every_event_written(redis_client):
    stream = settings.TASKTRAIL_STREAM
    writer = StreamWriter(settings.REDIS_URL, stream, flush_interval=60)
    for i in range(12):  # 12 x 1 MiB of arguments: past the 4 MiB an entry may hold
        writer.emit(make_event("published", f"t{i}", T, args="[" + "1," * 500_000 + "1]"))
    assert writer.flush() is True
    assert 3 <= redis_client.xlen(stream) <= 12
    assert [e["task_id"] for e in read_events(redis_client, stream)] == [f"t{i}" for i in range(12)]
    writer.close()


def test_signed_entries_verify_with_the_writers_key(redis_client):
    from tasktrail.signing import parse_keys, verify

    stream = settings.TASKTRAIL_STREAM
    [key] = parse_keys("k1:" + "s" * 32)
    writer = StreamWriter(settings.REDIS_URL, stream, flush_interval=60, signing_key=key)
    writer.emit(make_event("received", "t1", T))
    assert writer.flush() is True
    [(_, fields)] = redis_client.xrange(stream)
    assert fields[b"s"].startswith(b"k1:")
    assert verify(fields, (key,), stream) is None
    writer.close()

"""A worker's heartbeat: what it says, how it counts the tasks its main process sees finish, the
entry it writes to the stream, and the decoder the monitor runs on whatever arrives there."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import msgpack
import pytest
from celery.exceptions import Ignore, Reject, Retry
from django.conf import settings
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tasktrail import heartbeat
from tasktrail.heartbeat import (
    ENTRY_FIELD,
    MAX_QUEUES,
    MAX_RUNNING,
    Counters,
    Heartbeat,
    Heartbeater,
    HeartbeatError,
    decode_heartbeat,
    encode_heartbeat,
    heartbeat_interval,
    is_heartbeat,
    running_tasks,
    watch_request,
)
from tests.conftest import examples

NOW = 1_790_000_000.0


def beat(**changes: Any) -> Heartbeat:
    values: dict[str, Any] = {
        "hostname": "celery@pod-1",
        "ts": NOW,
        "pid": 4242,
        "started_at": NOW - 100,
        "app": "shop",
        "pool": "prefork",
        "concurrency": 4,
        "queues": ("default", "mail"),
        "running": ("t-1", "t-2"),
        "running_count": 2,
        "processed": 10,
        "failed": 1,
        "celery": "5.7.0",
        "kombu": "5.7.0",
        "python": "3.11.7",
        "release": "2026.12.1",
    }
    values.update(changes)
    return Heartbeat(**values)


def body_of(b: Heartbeat) -> dict[str, Any]:
    return msgpack.unpackb(encode_heartbeat(b)[ENTRY_FIELD], raw=False)


def packed(body: Any) -> dict[bytes, bytes]:
    return {ENTRY_FIELD: msgpack.packb(body, use_bin_type=True)}


def test_encode_decode_round_trip():
    original = beat(goodbye=True)
    fields = encode_heartbeat(original)
    assert is_heartbeat(fields) and not is_heartbeat({b"e": b"x"})
    assert decode_heartbeat(fields) == original


def test_text_loses_control_characters_and_is_cut_to_size():
    body = body_of(beat())
    body.update(
        app="shop\r\nX-Injected: 1\x00\x1b[31m",
        release="r" * 1000,
        celery="5.7.0\n" + "9" * 100,
        queues=["ok", "bad\nqueue", "", 7, None, "x" * 300],
        running=["t\r1", {"id": "nested"}],
    )
    decoded = decode_heartbeat(packed(body))
    assert decoded.app == "shopX-Injected: 1[31m"
    assert decoded.release == "r" * 255
    assert len(decoded.celery) == 64 and "\n" not in decoded.celery
    assert decoded.queues == ("ok", "badqueue", "x" * 255)
    assert decoded.running == ("t1",)


def test_huge_lists_are_cut_and_the_running_count_kept():
    body = body_of(beat())
    body.update(
        queues=[f"q{i}" for i in range(5000)],
        running=[f"t{i}" for i in range(5000)],
        running_count=5000,
    )
    decoded = decode_heartbeat(packed(body))
    assert len(decoded.queues) == MAX_QUEUES and len(decoded.running) == MAX_RUNNING
    assert decoded.running_count == 5000


def test_wrong_types_of_shown_fields_are_dropped_not_fatal():
    body = body_of(beat())
    body.update(app=12, pool=["prefork"], concurrency="4", queues="default", release=None)
    decoded = decode_heartbeat(packed(body))
    assert (decoded.app, decoded.pool, decoded.concurrency, decoded.queues) == ("", "", None, ())
    assert decoded.release == ""


def test_a_start_after_the_beat_is_capped_at_the_beat():
    body = body_of(beat())
    body["started_at"] = NOW + 3600
    assert decode_heartbeat(packed(body)).started_at == NOW


def _body(**changes: Any) -> dict[bytes, bytes]:
    body = body_of(beat())
    for key, value in changes.items():
        if value is _DROP:
            body.pop(key)
        else:
            body[key] = value
    return packed(body)


_DROP = object()


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({b"e": b"x"}, "no 'h' field"),
        ({ENTRY_FIELD: b"\xc1"}, "not msgpack"),
        ({ENTRY_FIELD: b"x" * (heartbeat.MAX_ENTRY_BYTES + 1)}, "larger than"),
        (packed([1, 2]), "not a map"),
        (_body(v=2), "schema version"),
        (_body(v=True), "schema version"),
        (_body(hostname=_DROP), "hostname"),
        (_body(hostname="w@h\r\nforged"), "hostname"),
        (_body(hostname="h" * 256), "hostname"),
        (_body(hostname="   "), "hostname"),
        (_body(ts=NOW * 100), "plausible Unix time"),
        (_body(ts=math.inf), "plausible Unix time"),
        (_body(ts="2026-12-07"), "plausible Unix time"),
        (_body(started_at=1.0), "plausible Unix time"),
        (_body(pid="4242"), "pid"),
        (_body(pid=-1), "pid"),
        (_body(pid=True), "pid"),
        (_body(processed=-5), "counters"),
        (_body(failed=2**63), "counters"),
        (_body(processed=1.5), "counters"),
        (_body(running_count=-1), "counters"),
        (_body(bye="yes"), "bye"),
    ],
)
def test_an_unusable_heartbeat_is_refused_with_its_reason(fields, reason):
    with pytest.raises(HeartbeatError) as caught:
        decode_heartbeat(fields)
    assert reason in caught.value.reason


_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=300),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)


@hsettings(max_examples=examples(100))
@given(
    changes=st.dictionaries(
        st.sampled_from(sorted(body_of(beat()))) | st.text(max_size=5), _values, max_size=8
    )
)
def test_any_heartbeat_decodes_bounded_or_is_refused(changes):
    body = {**body_of(beat()), **changes}
    try:
        decoded = decode_heartbeat(packed(body))
    except HeartbeatError:
        return
    texts = [decoded.app, decoded.pool, decoded.release, *decoded.queues, *decoded.running]
    assert all(len(t) <= 255 and t.isprintable() for t in texts)
    assert all(len(v) <= 64 for v in (decoded.celery, decoded.kombu, decoded.python))
    assert len(decoded.queues) <= MAX_QUEUES and len(decoded.running) <= MAX_RUNNING
    assert decoded.hostname.isprintable() and 0 < len(decoded.hostname) <= 255
    assert decoded.started_at <= decoded.ts and decoded.failed >= 0
    assert isinstance(decoded.goodbye, bool)


# -- counting -------------------------------------------------------------------------------------


class FakeRequest:
    """The three callbacks a pool calls on a request, as ``celery.worker.request`` has them:
    ``on_success`` hands a failure on to ``on_failure``."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def on_success(self, failed__retval__runtime: Any, **kwargs: Any) -> None:
        self.calls.append("success")
        failed, retval, _ = failed__retval__runtime
        if failed:
            self.on_failure(retval, return_ok=True)

    def on_failure(self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False):
        self.calls.append("failure")

    def on_timeout(self, soft: bool, timeout: float) -> None:
        self.calls.append("timeout")


def info(exc: BaseException) -> Any:
    return SimpleNamespace(exception=exc)


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (lambda r: r.on_success((0, "ok", 0.1)), (1, 0)),
        (lambda r: r.on_success((1, info(ValueError("x")), 0.1)), (1, 1)),
        (lambda r: r.on_failure(info(RuntimeError("lost"))), (1, 1)),
        (lambda r: r.on_success((1, info(Retry("again")), 0.1)), (1, 0)),
        (lambda r: r.on_success((1, info(Ignore()), 0.1)), (1, 0)),
        (lambda r: r.on_success((1, info(Reject("x", requeue=True)), 0.1)), (1, 0)),
        (lambda r: r.on_success((1, info(Reject("x", requeue=False)), 0.1)), (1, 1)),
        (lambda r: (r.on_timeout(True, 5), r.on_success((0, "ok", 9))), (1, 0)),
        (lambda r: (r.on_timeout(False, 9), r.on_failure(info(RuntimeError()))), (1, 1)),
    ],
)
def test_each_request_is_counted_once_by_its_outcome(outcome, expected):
    counters = Counters()
    request = FakeRequest()
    watch_request(request, counters)
    outcome(request)
    outcome(request)  # a second callback for the same request is not a second task
    assert counters.read() == expected
    assert request.calls  # Celery's own handling ran


def test_a_request_that_cannot_be_wrapped_is_left_alone():
    class Slotted:
        __slots__ = ()

        def on_success(self, *a: Any) -> None: ...
        def on_failure(self, *a: Any) -> None: ...
        def on_timeout(self, *a: Any) -> None: ...

    watch_request(Slotted(), Counters())  # no error
    watch_request(object(), Counters())


def test_running_tasks_are_bounded_and_counted():
    requests = [SimpleNamespace(id=f"t-{i}") for i in range(150)] + [SimpleNamespace(id=None)]
    ids, count = running_tasks(requests)
    assert len(ids) == MAX_RUNNING and count == 150


@pytest.mark.parametrize(
    ("value", "expected"), [("", 5), ("1", 1), ("30", 30), ("0", 1), ("2.5", 5), ("x", 5)]
)
def test_the_interval_comes_from_the_environment(value, expected):
    assert heartbeat_interval({"TASKTRAIL_HEARTBEAT_INTERVAL": value}) == expected


# -- sending --------------------------------------------------------------------------------------


def consumer(queues: tuple[str, ...] = ("default",)) -> Any:
    from celery.concurrency.solo import TaskPool

    return SimpleNamespace(
        task_consumer=SimpleNamespace(queues=[SimpleNamespace(name=q) for q in queues]),
        pool=TaskPool(),
        controller=SimpleNamespace(concurrency=8),
    )


def target(url: str = "", cap: int = 0) -> Any:
    return SimpleNamespace(
        recorder_url=url or settings.REDIS_URL,
        stream=settings.TASKTRAIL_STREAM,
        stream_max_entries=cap,
    )


def test_a_heartbeat_says_what_the_worker_does(redis_client):
    counters = Counters()
    counters.finished(False)
    counters.finished(True)
    app = SimpleNamespace(main="shop")
    beater = Heartbeater(
        consumer(("default", "mail")), app, "w@h", target(), counters=counters, release="v9"
    )
    assert beater.send()
    entries = redis_client.xrange(settings.TASKTRAIL_STREAM)
    sent = decode_heartbeat(entries[-1][1])
    assert (sent.hostname, sent.app, sent.pool, sent.concurrency) == ("w@h", "shop", "solo", 1)
    assert sent.queues == ("default", "mail") and (sent.processed, sent.failed) == (2, 1)
    assert sent.release == "v9" and sent.celery and sent.kombu and sent.python
    assert not sent.goodbye


def test_heartbeats_keep_the_stream_cap(redis_client):
    beater = Heartbeater(consumer(), SimpleNamespace(main="shop"), "w@h", target(cap=3))
    for i in range(300):
        redis_client.xadd(settings.TASKTRAIL_STREAM, {b"e": b"%d" % i})
    assert beater.send()
    assert redis_client.xlen(settings.TASKTRAIL_STREAM) < 300
    trimmed = redis_client.hgetall(settings.TASKTRAIL_STREAM + ":trimmed")
    assert int(trimmed[b"entries"]) > 0 and trimmed[b"cap"] == b"3"


def test_nothing_is_sent_after_the_goodbye(redis_client):
    beater = Heartbeater(consumer(), SimpleNamespace(main="shop"), "w@h", target())
    assert beater.goodbye()
    assert beater.send()  # accepted and dropped: a beat after the goodbye would revive it
    entries = redis_client.xrange(settings.TASKTRAIL_STREAM)
    assert [decode_heartbeat(f).goodbye for _, f in entries] == [True]


def test_a_beat_that_cannot_be_written_is_logged_masked_never_raised(tasktrail_log):
    url = "redis://user:s3cret-pass@127.0.0.1:1/0"
    beater = Heartbeater(consumer(), SimpleNamespace(main="shop"), "w@h", target(url))
    assert beater.send() is False and beater.goodbye() is False
    warnings = tasktrail_log.warnings()
    assert any("cannot write" in w for w in warnings)
    assert not any("s3cret" in w for w in warnings)


def test_with_an_event_key_the_heartbeat_is_signed(redis_client):
    from tasktrail.signing import parse_keys, verify

    keys = parse_keys("k1:" + "s" * 32)
    signing = SimpleNamespace(**vars(target()), event_keys=keys)
    beater = Heartbeater(consumer(), SimpleNamespace(main="shop"), "w@h", signing)
    assert beater.send()
    [(_, fields)] = redis_client.xrange(settings.TASKTRAIL_STREAM)
    assert verify(fields, keys, settings.TASKTRAIL_STREAM) is None
    assert decode_heartbeat(fields).hostname == "w@h"

"""The monitor against a real Redis stream and the real database."""

from __future__ import annotations

import msgpack
import pytest
from django.conf import settings
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from dashboard.ingest.monitor import Monitor
from dashboard.ingest.stream import StreamConsumer
from dashboard.models import TaskAttempt, TaskRun
from tasktrail.events import FIELDS, KINDS, decode_entry, encode_batch
from tests.conftest import event, examples, new_task_id, story_success

pytestmark = pytest.mark.django_db


def make_monitor(client, name="m1"):
    return Monitor(StreamConsumer(client, settings.TASKTRAIL_STREAM, consumer=name))


def test_drain_writes_rows_and_empties_the_stream(redis_client):
    ids = [new_task_id() for _ in range(20)]
    for task_id in ids:
        redis_client.xadd(settings.TASKTRAIL_STREAM, encode_batch(story_success(task_id)))
    stats = make_monitor(redis_client).run(drain=True)
    assert stats.events == 80
    assert TaskRun.objects.filter(task_id__in=ids, state="SUCCESS").count() == 20
    assert redis_client.xlen(settings.TASKTRAIL_STREAM) == 0


@pytest.mark.parametrize(
    "fields",
    [
        {b"e": b"\xff\x00 not msgpack"},
        {b"e": msgpack.packb({"a": 1})},
        {b"other": b"x"},
        {b"e": msgpack.packb([{"v": 1, "kind": "exploded", "task_id": "x", "ts": 1.0}])},
        {b"e": msgpack.packb([{"v": 99, "kind": "published", "task_id": "x", "ts": 1.8e9}])},
        {b"e": msgpack.packb([{"v": 1, "kind": "published", "task_id": "x", "ts": "soon"}])},
        {
            b"e": msgpack.packb(
                [{"v": 1, "kind": "published", "task_id": "x", "ts": 1.8e9, "retries": "2"}]
            )
        },
        {
            b"e": msgpack.packb(
                [{"v": 1, "kind": "published", "task_id": "x", "ts": 1.8e9, "eta": 1e18}]
            )
        },
        {
            b"e": msgpack.packb(
                [{"v": 1, "kind": "started", "task_id": "x", "ts": 1.8e9, "pid": 2**40}]
            )
        },
        {b"e": msgpack.packb([{"v": 1, "kind": [], "task_id": "x", "ts": 1.8e9}])},
        {b"e": b"\x91" * 1000 + b"\xc0"},  # an event nested deeper than Python can print
    ],
)
def test_malformed_entry_goes_to_dead_letter_and_good_ones_still_land(redis_client, fields):
    good = new_task_id()
    redis_client.xadd(settings.TASKTRAIL_STREAM, fields)
    redis_client.xadd(settings.TASKTRAIL_STREAM, encode_batch(story_success(good)))
    stats = make_monitor(redis_client).run(drain=True)
    assert stats.rejected == 1
    assert TaskRun.objects.get(task_id=good).state == "SUCCESS"
    dead = redis_client.xrange(settings.TASKTRAIL_STREAM + ":dead")
    assert len(dead) == 1
    assert dead[0][1][b"reason"]
    assert redis_client.xlen(settings.TASKTRAIL_STREAM) == 0


def test_mixed_entry_keeps_its_valid_events(redis_client):
    task_id = new_task_id()
    entry = [*story_success(task_id), {"v": 1, "kind": "published"}]
    redis_client.xadd(settings.TASKTRAIL_STREAM, encode_batch(entry))
    stats = make_monitor(redis_client).run(drain=True)
    assert (stats.events, stats.rejected) == (4, 1)
    assert TaskRun.objects.get(task_id=task_id).state == "SUCCESS"


def test_entries_left_pending_by_a_dead_monitor_are_taken_over(redis_client):
    task_id = new_task_id()
    stream = settings.TASKTRAIL_STREAM
    redis_client.xadd(stream, encode_batch(story_success(task_id)))
    dead = StreamConsumer(redis_client, stream, consumer="crashed")
    dead.ensure_group()
    assert len(dead.read(10, None)) == 1  # delivered, never acknowledged
    make_monitor(redis_client, name="survivor").run(drain=True)
    assert TaskRun.objects.get(task_id=task_id).state == "SUCCESS"
    assert redis_client.xpending(stream, "tasktrail-monitor")["pending"] == 0


def test_fields_at_their_caps_are_stored(redis_client):
    task_id = "x" * 255
    redis_client.xadd(
        settings.TASKTRAIL_STREAM,
        encode_batch(
            [event("published", task_id, 1_750_000_000.0, name="n" * 255, published_at=1.75e9)]
        ),
    )
    make_monitor(redis_client).run(drain=True)
    assert TaskRun.objects.get(task_id=task_id).name == "n" * 255


def test_task_id_with_a_nul_is_dead_lettered_with_the_reason(redis_client):
    good = new_task_id()
    redis_client.xadd(settings.TASKTRAIL_STREAM, encode_batch(story_success("t-\x00-1")))
    redis_client.xadd(settings.TASKTRAIL_STREAM, encode_batch(story_success(good)))
    stats = make_monitor(redis_client).run(drain=True)
    assert (stats.events, stats.rejected) == (4, 4)
    dead = redis_client.xrange(settings.TASKTRAIL_STREAM + ":dead")
    assert [fields[b"reason"] for _, fields in dead] == [b"task_id contains a NUL character"] * 4
    assert list(TaskRun.objects.values_list("task_id", "state")) == [(good, "SUCCESS")]


def test_nul_in_free_text_is_stored_as_a_replacement_character(redis_client):
    task_id, text = new_task_id(), "a\x00b"
    # Written as a producer other than the recorder (which cleans free text itself) might.
    published = {
        **event("published", task_id, 1_750_000_000.0, published_at=1.75e9),
        **dict.fromkeys(("name", "queue", "input_id", "arg_names", "args_dropped"), text),
        **{"args": '["\x00"]', "kwargs": '{"k": "\x00"}'},
    }
    failed = {
        **event("failed", task_id, 1_750_000_001.0, retries=0, pid=1),
        **dict.fromkeys(("hostname", "exc_type", "exc_message", "traceback"), text),
    }
    redis_client.xadd(settings.TASKTRAIL_STREAM, encode_batch([published, failed]))
    stats = make_monitor(redis_client).run(drain=True)
    assert (stats.events, stats.rejected) == (2, 0)
    [row] = TaskRun.objects.filter(task_id=task_id).values(
        "name",
        "queue",
        "input_id",
        "arg_names",
        "args_dropped",
        "worker",
        "exc_type",
        "exc_message",
    )
    assert row == dict.fromkeys(row, "a\ufffdb")
    assert TaskRun.objects.filter(
        task_id=task_id, args='["\ufffd"]', kwargs='{"k": "\ufffd"}'
    ).exists()
    [attempt] = TaskAttempt.objects.filter(task_id=task_id).values("outcome", "traceback")
    assert attempt == {"outcome": "FAILURE", "traceback": "a\ufffdb"}


def test_heartbeat_records_lag_and_counts(redis_client):
    redis_client.xadd(settings.TASKTRAIL_STREAM, encode_batch(story_success(new_task_id())))
    make_monitor(redis_client, name="hb").run(drain=True)
    beats = redis_client.hgetall(settings.TASKTRAIL_STREAM + ":monitors")
    assert b"hb" in beats
    assert b'"events": 4' in beats[b"hb"]


def test_batch_the_writer_cannot_store_is_split_and_only_the_culprit_set_aside(
    redis_client, monkeypatch
):
    # Simulate content the database refuses for one task: the others must still be written.
    from dashboard.ingest import monitor as monitor_module

    bad, good = new_task_id(), new_task_id()
    real_write = monitor_module.write_events

    def refusing(events):
        if any(e["task_id"] == bad for e in events):
            raise ValueError("refused")
        return real_write(events)

    monkeypatch.setattr(monitor_module, "write_events", refusing)
    redis_client.xadd(
        settings.TASKTRAIL_STREAM, encode_batch(story_success(bad) + story_success(good))
    )
    stats = make_monitor(redis_client).run(drain=True)
    assert stats.rejected == 4
    assert TaskRun.objects.filter(task_id=good).exists()
    assert not TaskRun.objects.filter(task_id=bad).exists()
    assert redis_client.xlen(settings.TASKTRAIL_STREAM + ":dead") == 4


# -- fuzz: whatever the stream holds, the monitor goes on and accounts for every item ------------

_texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | _texts
    | st.binary(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_texts, children, max_size=3),
    max_leaves=8,
)
# Valid headers with arbitrary values in the known fields (these reach the database), and now
# and then one header replaced by anything.
_near_valid = st.tuples(
    st.fixed_dictionaries(
        {
            "v": st.just(1),
            "kind": st.sampled_from(sorted(KINDS)),
            "task_id": st.text(
                alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=16
            ).map(lambda s: "fz-" + s),
            "ts": st.floats(946_684_800.0, 4_102_444_800.0),
        },
        optional={
            name: _values | st.integers(-(2**31), 2**31 - 1) | st.floats() for name in FIELDS
        },
    ),
    st.none() | st.tuples(st.sampled_from(["v", "kind", "task_id", "ts"]), _values),
).map(lambda pair: pair[0] if pair[1] is None else {**pair[0], pair[1][0]: pair[1][1]})
_entries = st.one_of(
    st.binary(max_size=256).map(lambda b: {b"e": b}),
    st.lists(_values, max_size=3).map(lambda items: {b"e": msgpack.packb(items)}),
    st.lists(_near_valid, min_size=1, max_size=4).map(lambda items: {b"e": msgpack.packb(items)}),
    st.dictionaries(st.binary(min_size=1, max_size=4), st.binary(max_size=16), min_size=1),
)


# Each failure ever found, as the strategies produce it, is kept as an explicit example.
@example(  # a task id PostgreSQL text cannot hold: rejected at decode on every database
    entries=[
        {b"e": msgpack.packb([{"v": 1, "kind": "published", "task_id": "fz-\x00", "ts": 1e9}])}
    ],
    good_at=0,
)
@hypothesis_settings(
    max_examples=examples(150),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(entries=st.lists(_entries, min_size=1, max_size=5), good_at=st.integers(0, 5))
def test_any_stream_content_never_stops_the_monitor_and_each_bad_item_is_dead_lettered(
    redis_client, transactional_db, entries, good_at
):
    stream = settings.TASKTRAIL_STREAM
    redis_client.delete(stream, stream + ":dead")
    good = new_task_id()
    entries = list(entries)
    entries.insert(min(good_at, len(entries)), encode_batch(story_success(good)))
    ids = [redis_client.xadd(stream, fields) for fields in entries]

    stats = make_monitor(redis_client, name=f"fuzz-{good}").run(drain=True)  # never raises

    assert TaskRun.objects.get(task_id=good).state == "SUCCESS"  # the good events still land
    assert redis_client.xlen(stream) == 0
    assert redis_client.xpending(stream, "tasktrail-monitor")["pending"] == 0
    dead = [fields for _, fields in redis_client.xrange(stream + ":dead")]
    assert all(fields[b"reason"] for fields in dead)
    assert stats.rejected == sum(int(fields.get(b"count", 1)) for fields in dead)
    # Compared in Python: a query naming an id the database cannot hold would itself raise.
    stored = set(TaskRun.objects.values_list("task_id", flat=True))
    for entry_id, fields in zip(ids, entries, strict=True):
        decoded, rejected = decode_entry(fields)
        # A "c" field is read as a worker's task catalog (never a valid one in 16 random bytes);
        # events are read from "e", or the entry is refused for having neither.
        expected = len(rejected) if b"e" in fields or b"c" not in fields else 0
        expected += b"c" in fields
        assert sum(d[b"entry"] == entry_id for d in dead) == expected
        for item in decoded:  # valid: stored, on every database
            assert item["task_id"] in stored


def test_entry_the_decoder_fails_on_is_dead_lettered_and_the_rest_lands(redis_client, monkeypatch):
    from dashboard.ingest import monitor as monitor_module

    real_decode = monitor_module.decode_entry

    def failing(fields):
        if fields.get(b"e") == b"poison":
            raise RuntimeError("decoder bug")
        return real_decode(fields)

    monkeypatch.setattr(monitor_module, "decode_entry", failing)
    good = new_task_id()
    redis_client.xadd(settings.TASKTRAIL_STREAM, {b"e": b"poison"})
    redis_client.xadd(settings.TASKTRAIL_STREAM, encode_batch(story_success(good)))
    stats = make_monitor(redis_client).run(drain=True)
    assert (stats.rejected, TaskRun.objects.get(task_id=good).state) == (1, "SUCCESS")
    [(_, dead)] = redis_client.xrange(settings.TASKTRAIL_STREAM + ":dead")
    assert dead[b"reason"].startswith(b"decoder failed: RuntimeError")
    assert redis_client.xlen(settings.TASKTRAIL_STREAM) == 0

from __future__ import annotations

from collections import Counter

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasktrail.events import (
    MAX_MESSAGE,
    clean_text,
    clip,
    decode_entry,
    encode_batch,
    make_event,
    validate_event,
)
from tests.conftest import examples

T = 1_750_000_000.0


def test_encode_then_decode_round_trips():
    events = [
        make_event("published", "a", T, name="n", retries=0, args="[1]", published_at=T),
        make_event("failed", "a", T + 1, exc_type="ValueError", exc_message="é ✓", runtime=0.5),
    ]
    decoded, rejected = decode_entry(encode_batch(events))
    assert decoded == events
    assert rejected == []


def test_make_event_drops_none_and_clips_long_text():
    e = make_event("failed", "a", T, exc_message="x" * (MAX_MESSAGE + 100), hostname=None)
    assert "hostname" not in e
    assert len(e["exc_message"]) == MAX_MESSAGE
    assert e["exc_message"].endswith("more characters]")


def test_clean_text_removes_nul_and_lone_surrogates():
    raw = b"caf\xe9 \x00 done".decode("utf-8", "surrogateescape")
    cleaned = clean_text(raw)
    cleaned.encode("utf-8")  # must not raise
    assert "\x00" not in cleaned
    assert "\\udce9" in cleaned


def test_clip_keeps_short_text():
    assert clip("short", 10) == "short"


def test_unknown_fields_are_ignored_on_decode():
    entry = {b"e": msgpack.packb([{"v": 1, "kind": "received", "task_id": "a", "ts": T, "new": 1}])}
    decoded, rejected = decode_entry(entry)
    assert decoded == [{"v": 1, "kind": "received", "task_id": "a", "ts": T}]
    assert rejected == []


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ("text", "not a map"),
        ({"v": 2, "kind": "received", "task_id": "a", "ts": T}, "schema version"),
        ({"v": 1, "kind": "nope", "task_id": "a", "ts": T}, "unknown kind"),
        ({"v": 1, "kind": [], "task_id": "a", "ts": T}, "unknown kind"),
        ({"v": 1, "kind": {"a": 1}, "task_id": "a", "ts": T}, "unknown kind"),
        ({"v": 1, "kind": "received", "task_id": "", "ts": T}, "task_id"),
        ({"v": 1, "kind": "received", "task_id": "a" * 256, "ts": T}, "task_id"),
        ({"v": 1, "kind": "received", "task_id": "a", "ts": float("nan")}, "ts"),
        ({"v": 1, "kind": "received", "task_id": "a", "ts": T, "retries": True}, "retries"),
        ({"v": 1, "kind": "received", "task_id": "a", "ts": T, "hostname": 5}, "hostname"),
        ({"v": 1, "kind": "received", "task_id": "a\x00", "ts": T}, "task_id contains a NUL"),
        ({"v": 1, "kind": "received", "task_id": "a", "ts": T, "parent_id": "p\x00"}, "NUL"),
        ({"v": 1, "kind": "started", "task_id": "a", "ts": T, "span_id": "\x00"}, "NUL"),
        ({"v": 1, "kind": "received", "task_id": "a", "ts": T, "name": "n" * 300}, "longer"),
        ({"v": 1, "kind": "received", "task_id": "a", "ts": T, "eta": -5.0}, "eta"),
    ],
)
def test_validate_event_says_why(item, reason):
    assert reason in (validate_event(item) or "")


# Every text field that is not an id: NUL there is replaced on decode, the event is kept.
NUL_REPLACED_FIELDS = [
    "name",
    "queue",
    "input_id",
    "args",
    "kwargs",
    "arg_names",
    "args_dropped",
    "hostname",
    "exc_type",
    "exc_message",
    "traceback",
]


@pytest.mark.parametrize("key", NUL_REPLACED_FIELDS)
def test_nul_in_free_text_is_replaced_on_decode_and_the_event_kept(key):
    item = {"v": 1, "kind": "failed", "task_id": "a", "ts": T, key: "x\x00y\x00"}
    decoded, rejected = decode_entry({b"e": msgpack.packb([item])})
    assert rejected == []
    assert decoded == [{**item, key: "x\ufffdy\ufffd"}]


@pytest.mark.parametrize("key", ["parent_id", "root_id", "group_id", "retry_of", "traceparent"])
def test_nul_in_an_id_rejects_the_event_with_the_reason(key):
    item = {"v": 1, "kind": "published", "task_id": "a", "ts": T, key: "p\x00"}
    decoded, [rejected] = decode_entry({b"e": msgpack.packb([item])})
    assert decoded == []
    assert rejected.reason == f"field {key!r} contains a NUL character"


def nested(depth):
    value = None
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("key", ["v", "kind", "ts"])
def test_value_nested_too_deeply_to_print_is_rejected_without_raising(key):
    item = {"v": 1, "kind": "received", "task_id": "a", "ts": T, key: nested(1000)}
    decoded, [rejected] = decode_entry({b"e": msgpack.packb([item])})
    # refused before it is built further: never printed, never stored whole
    assert decoded == [] and "nested in its values" in rejected.reason


@settings(max_examples=examples(500))
@given(st.binary(max_size=2048))
def test_any_bytes_decode_without_raising(data):
    decoded, rejected = decode_entry({b"e": data})  # must not raise, whatever the bytes
    assert all(validate_event(event) is None for event in decoded)
    assert all(r.reason for r in rejected)


# What msgpack can carry: 64-bit integers, text without lone surrogates.
texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=examples(300))
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["v", "kind", "task_id", "ts", "retries", "name", "eta"]), json_values
        ),
        max_size=5,
    )
)
def test_any_structure_decodes_to_valid_events_or_reasons(items):
    decoded, rejected = decode_entry({b"e": msgpack.packb(items)})
    assert len(decoded) + len(rejected) == len(items)
    assert all(r.reason for r in rejected)


# -- make_event fits any value to the schema ------------------------------------------------------

from tasktrail.events import FIELDS, FIXES, event_task_id  # noqa: E402

any_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # any size: msgpack packs 64 bits, the monitor takes 32
    st.floats(),
    st.text(max_size=300),  # lone surrogates and NUL included
    st.binary(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.builds(object),
)


@settings(max_examples=examples(300))
@given(st.dictionaries(st.sampled_from(sorted(FIELDS)), any_value), st.text(max_size=300))
def test_make_event_always_packs_and_every_monitor_accepts_it(fields, task_id):
    checked = event_task_id(task_id)
    if checked is None:
        return
    event = make_event("published", checked, T, **fields)
    assert validate_event(event) is None
    decoded, rejected = decode_entry(encode_batch([event]))  # packs; decodes to the same event
    assert rejected == [] and decoded == [event]


def test_header_values_that_do_not_fit_are_dropped_or_cleaned_and_counted():
    before, counts_before = FIXES.total, Counter(FIXES.counts)
    event = make_event(
        "published",
        "a",
        T,
        traceparent=2**70,
        parent_id="p\udce9",
        root_id="r" * 300,
        group_id="g\x00",
        retries=2**40,
        eta=10**30,
        name=object(),
        queue="q\x00",
        hostname="h\udcff",
    )
    assert event == {
        "v": 1,
        "kind": "published",
        "task_id": "a",
        "ts": T,
        "parent_id": "p\\udce9",  # the same escape in every process: the link still holds
        "queue": "q\ufffd",
        "hostname": "h\\udcff",
    }
    assert FIXES.total - before == 6
    # the counts are per process, so other tests' fixes are there too: compare with before
    assert (FIXES.counts - counts_before)[("traceparent", "integer instead of text")] == 1


def test_event_task_id_refuses_what_no_monitor_takes():
    assert event_task_id("abc") == "abc"
    assert event_task_id("a\udce9") == "a\\udce9"
    assert event_task_id("a\x00") is None
    assert event_task_id("a" * 256) is None
    assert event_task_id("") is None and event_task_id(5) is None


def test_an_implausible_ts_becomes_now():
    assert make_event("received", "a", float("nan"))["ts"] > T
    assert make_event("received", "a", 2**80)["ts"] > T


# -- the monitor's work per entry is bounded ------------------------------------------------------

from tasktrail.events import MAX_ENTRY_EVENTS, MAX_REJECTS_KEPT, encode_entries  # noqa: E402


def test_an_entry_of_many_tiny_items_reads_only_the_cap_and_sums_up_the_rest():
    count = 100_000
    packed = msgpack.Packer().pack_array_header(count) + b"\x80" * count  # 100,000 empty maps
    decoded, rejected = decode_entry({b"e": packed})
    assert decoded == []
    assert len(rejected) == MAX_REJECTS_KEPT + 2
    assert sum(r.count for r in rejected) == count
    assert rejected[-1].reason == f"{count - MAX_ENTRY_EVENTS} items past the cap of 4000 per entry"
    assert rejected[-2].count == MAX_ENTRY_EVENTS - MAX_REJECTS_KEPT


def test_valid_events_before_the_cap_are_kept():
    events = [make_event("received", f"t{i}", T) for i in range(MAX_ENTRY_EVENTS + 5)]
    decoded, [rejected] = decode_entry(encode_batch(events))
    assert decoded == events[:MAX_ENTRY_EVENTS] and rejected.count == 5


def test_an_event_holding_nested_structures_is_refused_before_it_is_built():
    wide = {"v": 1, "kind": "received", "task_id": "a", "ts": T, "x": [[]] * 60, "y": [{}] * 60}
    good = make_event("received", "b", T)
    decoded, [rejected] = decode_entry(encode_batch([wide, good]))
    assert decoded == [good] and "nested in its values" in rejected.reason
    assert isinstance(rejected.raw, bytes) and len(rejected.raw) <= 4096


def test_an_unreadable_tail_is_one_summary():
    packed = encode_batch([make_event("received", "a", T)])[b"e"]
    truncated = b"\x93" + packed[1:] + b"\x81"  # 3 items announced, 1 whole, then a cut map
    decoded, [rejected] = decode_entry({b"e": truncated})
    assert [e["task_id"] for e in decoded] == ["a"]
    assert rejected.count == 2 and rejected.reason.startswith("items 2-3 not msgpack")


def test_encode_entries_splits_by_size_and_drops_only_the_bad():
    events = [make_event("published", f"t{i}", T, args="[" + "1" * 1000 + "]") for i in range(50)]
    bad = {"v": 1, "kind": "received", "task_id": "x", "ts": T, "pid": 2**70}
    payloads, dropped = encode_entries([*events[:25], bad, *events[25:]], max_bytes=10_000)
    assert len(payloads) > 1 and all(len(p) <= 10_000 for p in payloads)
    assert [(e["task_id"], "OverflowError" in why) for e, why in dropped] == [("x", True)]
    read = [e for p in payloads for e in decode_entry({b"e": p})[0]]
    assert read == events

from __future__ import annotations

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
    assert decoded == [] and "deeply nested list" in rejected.reason


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

"""The event format shared by the recorder (writer) and the monitor (reader).

One event is a flat dict: ``v, kind, task_id, ts`` plus what that kind knows. The recorder packs a
process's buffered events into one stream entry (a msgpack list under the field ``e``); the monitor
decodes an entry back into validated events and sets aside whatever does not validate.

Imports no Django: any Celery process can produce events.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import msgpack

SCHEMA_VERSION: Final = 1
ENTRY_FIELD: Final = b"e"

Kind = Literal[
    "published",  # before/after_task_publish: the message left the producer
    "received",  # task_received: a worker took the message (main process)
    "started",  # task_prerun: an attempt began (pool process)
    "retried",  # task_retry: the attempt failed and the task will run again
    "succeeded",  # task_success
    "failed",  # task_failure
    "revoked",  # task_revoked: skipped, expired or terminated
    "rejected",  # task_rejected: the worker refused the message
    "unknown",  # task_unknown: no task of that name is registered on the worker
]
KINDS: Final[frozenset[str]] = frozenset(Kind.__args__)  # type: ignore[attr-defined]

# Size caps, in characters, for free text a task controls.
MAX_ID: Final = 255
MAX_NAME: Final = 255
MAX_MESSAGE: Final = 4096
MAX_TRACEBACK: Final = 16384
DEFAULT_MAX_ARGS_BYTES: Final = 64 * 1024
# Stream entries bigger than this are refused by the monitor as malformed.
MAX_ENTRY_BYTES: Final = 16 * 1024 * 1024
# A writer packs at most this many events into one entry, and entries of at most this many bytes
# (a bigger batch is split); the monitor reads at most MAX_ENTRY_EVENTS events of an entry (twice
# the writers' batch) and sets the rest aside as one dead letter, so one entry's work is bounded.
MAX_BATCH_EVENTS: Final = 2000
MAX_PACKED_BYTES: Final = 4 * 1024 * 1024
MAX_ENTRY_EVENTS: Final = 2 * MAX_BATCH_EVENTS
# Args and kwargs are kept within TASKTRAIL_MAX_ARGS_BYTES (at most 1 MiB of JSON together).
MAX_ARGS_TEXT: Final = 1024 * 1024
MAX_EVENT_FIELDS: Final = 64  # keys of one event map the monitor reads (the schema has 30)
MAX_REJECTS_KEPT: Final = 10  # per entry: dead-lettered and logged one by one; the rest summed up

# field -> (accepted types, max length for str or None). Unknown fields are ignored on decode.
_STR = (str,)
_NUM = (int, float)
FIELDS: Final[dict[str, tuple[tuple[type, ...], int | None]]] = {
    "name": (_STR, MAX_NAME),
    "queue": (_STR, MAX_NAME),
    "input_id": (_STR, MAX_ID),
    "args": (_STR, MAX_ARGS_TEXT),  # JSON text, kept for retry; capped by the recorder
    "kwargs": (_STR, MAX_ARGS_TEXT),
    "arg_names": (_STR, 4096),  # comma-separated positional parameter names, for redaction
    "args_dropped": (_STR, 255),  # why args/kwargs were not kept
    "retries": ((int,), None),
    "eta": (_NUM, None),
    "expires": (_NUM, None),
    "parent_id": (_STR, MAX_ID),
    "root_id": (_STR, MAX_ID),
    "group_id": (_STR, MAX_ID),
    "retry_of": (_STR, MAX_ID),
    "published_at": (_NUM, None),
    "traceparent": (_STR, 128),
    "span_id": (_STR, 16),
    "hostname": (_STR, MAX_NAME),
    "pid": ((int,), None),
    "exc_type": (_STR, MAX_NAME),
    "exc_message": (_STR, MAX_MESSAGE),
    "traceback": (_STR, MAX_TRACEBACK),
    "runtime": (_NUM, None),
    "queue_wait": (_NUM, None),
    "terminated": ((bool,), None),
    "expired": ((bool,), None),
}

Event = dict[str, Any]


def clip(text: str | None, limit: int) -> str | None:
    """Cut ``text`` to ``limit`` characters, marking the cut."""
    if text is None or len(text) <= limit:
        return text
    marker = f"… [{len(text) - limit + 20} more characters]"
    return text[: max(0, limit - len(marker))] + marker


def clean_text(text: str) -> str:
    """Make text storable anywhere: no NUL (PostgreSQL refuses it), no lone surrogates
    (undecodable bytes surface as those and cannot be encoded as UTF-8)."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


class FieldFixes:
    """What ``make_event`` had to change to fit the schema, per process: counts by (field,
    problem), a bounded set (no values). The writer's thread logs them, at most once a minute."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self.total = 0
        self._lock = threading.Lock()

    def add(self, key: str, problem: str) -> None:
        with self._lock:
            self.counts[(key, problem)] += 1
            self.total += 1

    def summary(self, limit: int = 5) -> str:
        with self._lock:
            common = self.counts.most_common(limit)
        return ", ".join(f"{key}: {problem} ({n})" for (key, problem), n in common)


FIXES: Final = FieldFixes()
_DROP: Final = object()


def make_event(kind: Kind, task_id: str, ts: float, **fields: Any) -> Event:
    """Build an event every monitor accepts, whatever the values: a field of the wrong type, an
    integer out of range, an id with NUL or too long is dropped; text is cleaned (lone surrogates,
    NUL) and clipped; an implausible ``ts`` becomes now. Each change is counted in ``FIXES``.
    ``task_id`` must be one ``event_task_id`` accepted. Never raises."""
    if type(ts) is not float or not _MIN_TS <= ts < _MAX_TS:
        ts = _checked_ts(ts)
    event: Event = {"v": SCHEMA_VERSION, "kind": kind, "task_id": task_id, "ts": ts}
    for key, value in fields.items():
        if value is None:
            continue
        check = _CHECKS.get(key)
        if check is None:
            FIXES.add(key, "not a field of the event schema")
            continue
        cls = type(value)
        if cls is str and check is _TEXT_CHECK:
            if value.isascii() and "\x00" not in value and len(value) <= _LIMITS[key]:
                event[key] = value  # the usual case, kept cheap: this runs for every task
                continue
            value = _checked_text(key, value)
        elif check is _FLOAT_CHECK and cls is float and math.isfinite(value):
            if key in _TIME_FIELDS and not 0 <= value < _MAX_TS:
                FIXES.add(key, "not a plausible Unix time")
                continue
        else:
            value = check(key, value)
        if value is not _DROP:
            event[key] = value
    return event


def event_task_id(value: Any) -> str | None:
    """``value`` as the task id of an event, or None (counted) when no monitor would take it."""
    if type(value) is str and 0 < len(value) <= MAX_ID and value.isascii() and "\x00" not in value:
        return value
    if not isinstance(value, str) or not value:
        return None
    text = _safe_text(str.__str__(value))
    if "\x00" in text or len(text) > MAX_ID:
        FIXES.add("task_id", "NUL or longer than 255 characters: event dropped")
        return None
    return text


def _checked_ts(value: Any) -> float:
    if _is_number(value) and _MIN_TS <= value < _MAX_TS:
        return float(value)
    FIXES.add("ts", "not a plausible Unix time: now instead")
    return time.time()


def _safe_text(text: str) -> str:
    """Text UTF-8 can encode: lone surrogates (undecodable bytes surface as those) escaped."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _checked_text(key: str, value: str) -> Any:
    if type(value) is not str:
        value = str.__str__(value)  # a str subclass: its plain text
    if not value.isascii():
        value = _safe_text(value)
    limit = _LIMITS[key]
    if key in _DROP_NOT_CUT:  # a changed id would name another task, cut JSON cannot be read
        if "\x00" in value:
            FIXES.add(key, "contains NUL")
            return _DROP
        if len(value) > limit:
            FIXES.add(key, f"longer than {limit} characters")
            return _DROP
        return value
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    return clip(value, limit) if len(value) > limit else value


def _text_check(key: str, value: Any) -> Any:
    if isinstance(value, str):
        return _checked_text(key, value)
    FIXES.add(key, f"{_kind_of(value)} instead of text")
    return _DROP


def _int_check(key: str, value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        if -_MAX_INT <= value < _MAX_INT:
            return int(value)
        FIXES.add(key, "integer out of range")
    else:
        FIXES.add(key, f"{_kind_of(value)} instead of an integer")
    return _DROP


def _float_check(key: str, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        FIXES.add(key, f"{_kind_of(value)} instead of a number")
        return _DROP
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number) or (key in _TIME_FIELDS and not 0 <= number < _MAX_TS):
        FIXES.add(key, "not a plausible Unix time" if key in _TIME_FIELDS else "out of range")
        return _DROP
    return number


def _bool_check(key: str, value: Any) -> Any:
    if isinstance(value, bool):
        return bool(value)
    FIXES.add(key, f"{_kind_of(value)} instead of a boolean")
    return _DROP


def _kind_of(value: object) -> str:
    return {int: "integer", float: "number", bool: "boolean", str: "text"}.get(
        type(value), "another type"
    )


_TEXT_CHECK: Final = _text_check
_FLOAT_CHECK: Final = _float_check


def encode_batch(events: Sequence[Event]) -> dict[bytes, bytes]:
    """Pack events into the fields of one stream entry (raises if one cannot be packed)."""
    return {ENTRY_FIELD: msgpack.packb(list(events), use_bin_type=True)}


def encode_entries(
    events: Sequence[Event], max_bytes: int = MAX_PACKED_BYTES
) -> tuple[list[bytes], list[tuple[Event, str]]]:
    """Pack events into the payloads of one or more entries (each at most ``max_bytes``), and
    the events that cannot be packed with why. Packed as one list when it can be; else event by
    event, so one bad event costs only itself. Never raises."""
    try:
        packed: bytes | None = msgpack.packb(list(events), use_bin_type=True)
    except Exception:  # one event at least cannot be packed: found below
        packed = None
    if packed is not None and len(packed) <= max_bytes:
        return [packed], []
    good: list[bytes] = []
    bad: list[tuple[Event, str]] = []
    for event in events:
        try:
            one = msgpack.packb(event, use_bin_type=True)
        except Exception as exc:
            bad.append((event, f"{type(exc).__name__}: {exc}"[:200]))
            continue
        if len(one) + 5 > max_bytes:
            bad.append((event, f"{len(one)} bytes packed, more than an entry holds"))
        else:
            good.append(one)
    payloads: list[bytes] = []
    chunk: list[bytes] = []
    size = 5  # the largest array header
    for one in good:
        if chunk and size + len(one) > max_bytes:
            payloads.append(_array(chunk))
            chunk, size = [], 5
        chunk.append(one)
        size += len(one)
    if chunk:
        payloads.append(_array(chunk))
    return payloads, bad


def _array(packed_items: list[bytes]) -> bytes:
    return msgpack.Packer().pack_array_header(len(packed_items)) + b"".join(packed_items)


@dataclass(frozen=True)
class Rejected:
    """Something in an entry that is not a valid event, and why; ``count`` items when it sums up
    several (an entry's items past its caps)."""

    reason: str
    raw: Any
    count: int = 1


# msgpack's first byte: which values are maps or arrays (the rest are scalars, text or bytes).
_MAP_STARTS: Final = frozenset([*range(0x80, 0x90), 0xDE, 0xDF])
_ARRAY_STARTS: Final = frozenset([*range(0x90, 0xA0), 0xDC, 0xDD])


def decode_entry(fields: Mapping[bytes, bytes]) -> tuple[list[Event], list[Rejected]]:
    """Unpack one stream entry into valid events and rejected items. Never raises.

    Bounded whatever the entry holds: at most ``MAX_ENTRY_EVENTS`` events are read (the rest is
    one summary); each event is read on its own with limits, and one holding more than one map or
    list inside is refused before more is built; at most ``MAX_REJECTS_KEPT`` rejected items are
    kept with their content, the others are summed up in one more."""
    packed = fields.get(ENTRY_FIELD)
    if packed is None:
        return [], [Rejected("entry has no 'e' field", dict(fields))]
    if not isinstance(packed, bytes | bytearray):
        return [], [Rejected("entry's 'e' field is not bytes", repr(packed)[:200])]
    if len(packed) > MAX_ENTRY_BYTES:
        return [], [Rejected(f"entry larger than {MAX_ENTRY_BYTES} bytes", packed[:1024])]
    if not packed or packed[0] not in _ARRAY_STARTS:
        return [], [Rejected(_not_a_list(packed), packed[:4096])]
    view = memoryview(packed)
    hook = _Containers()
    base = 0  # where the unpacker in use started reading
    unpacker = _event_unpacker(view, base, hook)
    try:
        count = unpacker.read_array_header()
    except Exception as exc:  # a truncated header
        return [], [Rejected(f"not msgpack: {type(exc).__name__}", packed[:4096])]
    events: list[Event] = []
    rejects = _Rejects()
    for index in range(min(count, MAX_ENTRY_EVENTS)):
        start = base + unpacker.tell()
        hook.seen = 0
        try:
            item = unpacker.unpack()
        except Exception as exc:  # over a limit, or not msgpack: find where the item ends
            end = _item_end(view, start)
            if end is None:  # truncated or not msgpack from here on
                why = f"items {index + 1}-{count} not msgpack: {type(exc).__name__}"
                rejects.summary(why, packed[start : start + 4096], count - index)
                return events, rejects.items()
            rejects.add(_unreadable(exc), packed[start : min(end, start + 4096)])
            base = end
            unpacker = _event_unpacker(view, base, hook)
            continue
        reason = validate_event(item)
        if reason is None:
            events.append(_storable(item))
        else:
            rejects.add(reason, item)
    if count > MAX_ENTRY_EVENTS:
        extra = count - MAX_ENTRY_EVENTS
        rejects.summary(f"{extra} items past the cap of {MAX_ENTRY_EVENTS} per entry", b"", extra)
    elif base + unpacker.tell() != len(packed):
        rejects.add(f"{len(packed) - base - unpacker.tell()} bytes after the events", b"")
    return events, rejects.items()


class _Reader:
    """A file over part of the entry: an unpacker reads it in small pieces, never a whole copy."""

    __slots__ = ("pos", "view")

    def __init__(self, view: memoryview, pos: int) -> None:
        self.view = view
        self.pos = pos

    def read(self, size: int) -> bytes:
        chunk = self.view[self.pos : self.pos + size].tobytes()
        self.pos += len(chunk)
        return chunk


def _event_unpacker(view: memoryview, pos: int, hook: _Containers) -> msgpack.Unpacker:
    return msgpack.Unpacker(
        _Reader(view, pos),
        read_size=16 * 1024,
        raw=False,
        strict_map_key=True,
        max_map_len=MAX_EVENT_FIELDS,
        max_array_len=MAX_EVENT_FIELDS,
        object_hook=hook,
        list_hook=hook,
    )


def _item_end(view: memoryview, start: int) -> int | None:
    """Where the item at ``start`` ends (walked without building it), or None if it does not."""
    walker = msgpack.Unpacker(_Reader(view, start), read_size=4096)
    try:
        walker.skip()
    except Exception:
        return None
    return start + walker.tell()


def _unreadable(exc: Exception) -> str:
    if isinstance(exc, _Nested):
        return "event holds maps or lists nested in its values"
    return f"event not readable: {type(exc).__name__}: {exc}"[:300]


def _not_a_list(packed: bytes) -> str:
    """Why an entry that does not start with an array is refused, read without building it."""
    unpacker = msgpack.Unpacker(_Reader(memoryview(packed), 0), read_size=4096)
    try:
        unpacker.skip()
    except Exception as exc:
        return f"not msgpack: {type(exc).__name__}: {exc}"[:300]
    if unpacker.tell() != len(packed):
        return "not msgpack: ExtraData"
    return "entry is not a list of events"


class _Nested(Exception):
    """An event holds more than one map or list: not an event, and never built further."""


class _Containers:
    """Hooks allowing an event map and one map or list inside it (which then fails validation):
    more is refused at once, so a hostile event never grows into many objects."""

    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen = 0

    def __call__(self, value: Any) -> Any:
        self.seen += 1
        if self.seen > 2:
            raise _Nested
        return value


class _Rejects:
    """The rejected items of one entry: the first ``MAX_REJECTS_KEPT`` kept whole, the others
    counted into one summary (so an entry of many bad items is a few dead letters, not many)."""

    def __init__(self) -> None:
        self.kept: list[Rejected] = []
        self.more = 0
        self.first_more = ""
        self.summaries: list[Rejected] = []

    def add(self, reason: str, raw: Any) -> None:
        if len(self.kept) < MAX_REJECTS_KEPT:
            self.kept.append(Rejected(reason, raw))
        else:
            self.first_more = self.first_more or reason
            self.more += 1

    def summary(self, reason: str, raw: Any, count: int) -> None:
        self.summaries.append(Rejected(reason, raw, count))

    def items(self) -> list[Rejected]:
        items = list(self.kept)
        if self.more:
            reason = f"{self.more} more items rejected in this entry; the first: {self.first_more}"
            items.append(Rejected(reason[:1000], b"", self.more))
        return items + self.summaries


def _storable(item: dict[str, Any]) -> Event:
    """The known fields of a valid event, with NUL in text replaced: PostgreSQL text cannot hold
    NUL, and SQLite must store the same value (the recorder already cleans what it writes)."""
    return {
        k: v.replace("\x00", "\ufffd") if isinstance(v, str) and k in _TEXT else v
        for k, v in item.items()
        if k in FIELDS or k in _REQUIRED
    }


_REQUIRED: Final = ("v", "kind", "task_id", "ts")
# NUL (which PostgreSQL text cannot hold) decides an event's fate by the field it is in. In an id
# the event is rejected: the id picks or links rows, and a replaced character would name another
# task. In any other text (names, queue, host, error, traceback, arguments) it is replaced by
# U+FFFD on decode, so the event is never lost for it and both databases store the same value.
_IDS: Final = frozenset({"parent_id", "root_id", "group_id", "retry_of", "traceparent", "span_id"})
_TEXT: Final = frozenset(k for k, (types, _) in FIELDS.items() if types == _STR) - _IDS
# Anything before 2000-01-01 or more than a day ahead of the writer is a broken clock or a forgery.
_MIN_TS: Final = 946_684_800.0
_MAX_TS: Final = 32_503_680_000.0  # year 3000
_TIME_FIELDS: Final = frozenset({"eta", "expires", "published_at"})
_MAX_INT: Final = 2**31  # fits every integer column

# Per field: how make_event checks it. Ids and JSON are dropped rather than changed (_DROP_NOT_CUT).
_CHECKS: Final[dict[str, Any]] = {
    key: _text_check
    if types == _STR
    else _int_check
    if types == (int,)
    else _bool_check
    if types == (bool,)
    else _float_check
    for key, (types, _) in FIELDS.items()
}
_LIMITS: Final[dict[str, int]] = {key: limit or MAX_ARGS_TEXT for key, (_, limit) in FIELDS.items()}
_DROP_NOT_CUT: Final = _IDS | {"args", "kwargs"}


def validate_event(item: object) -> str | None:
    """Return why ``item`` is not a valid event, or None when it is."""
    if not isinstance(item, dict):
        return f"event is a {type(item).__name__}, not a map"
    v = item.get("v")
    if type(v) is not int or v != SCHEMA_VERSION:
        return f"unsupported schema version {_show(v)}"
    kind = item.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:  # a list or a map is not even hashable
        return f"unknown kind {_show(kind)}"
    task_id = item.get("task_id")
    if not isinstance(task_id, str) or not task_id or len(task_id) > MAX_ID:
        return "task_id missing or not a string of 1-255 characters"
    if "\x00" in task_id:
        return "task_id contains a NUL character"
    ts: Any = item.get("ts")
    if not _is_number(ts) or not _MIN_TS <= ts < _MAX_TS:
        return f"ts {_show(ts)} is not a plausible Unix time"
    for key, value in item.items():
        spec = FIELDS.get(key)
        if spec is None or value is None:
            continue  # unknown fields are ignored; absent ones are fine
        types, limit = spec
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            return f"field {key!r} has type {type(value).__name__}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"field {key!r} is not finite"
        if key in _TIME_FIELDS and not 0 <= float(value) < _MAX_TS:  # type: ignore[arg-type]
            return f"field {key!r} is not a plausible Unix time"
        if (
            isinstance(value, int)
            and not isinstance(value, bool)
            and not -_MAX_INT <= value < _MAX_INT
        ):
            return f"field {key!r} is out of range"
        if limit is not None and isinstance(value, str) and len(value) > limit:
            return f"field {key!r} longer than {limit}"
        if isinstance(value, str) and key in _IDS and "\x00" in value:
            return f"field {key!r} contains a NUL character"
    return None


def _show(value: object, limit: int = 200) -> str:
    """A short repr of a value from the stream, which may be nested too deeply even to print."""
    try:
        text = repr(value)
    except RecursionError:
        return f"<deeply nested {type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "…"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)

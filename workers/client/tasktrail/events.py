"""The event format shared by the recorder (writer) and the monitor (reader).

One event is a flat dict: ``v, kind, task_id, ts`` plus what that kind knows. The recorder packs a
process's buffered events into one stream entry (a msgpack list under the field ``e``); the monitor
decodes an entry back into validated events and sets aside whatever does not validate.

Imports no Django: any Celery process can produce events.
"""

from __future__ import annotations

import math
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

# field -> (accepted types, max length for str or None). Unknown fields are ignored on decode.
_STR = (str,)
_NUM = (int, float)
FIELDS: Final[dict[str, tuple[tuple[type, ...], int | None]]] = {
    "name": (_STR, MAX_NAME),
    "queue": (_STR, MAX_NAME),
    "input_id": (_STR, MAX_ID),
    "args": (_STR, None),  # JSON text, kept for retry; capped by the recorder
    "kwargs": (_STR, None),
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


def make_event(kind: Kind, task_id: str, ts: float, **fields: Any) -> Event:
    """Build an event, dropping empty fields and clipping text to the schema's caps."""
    event: Event = {"v": SCHEMA_VERSION, "kind": kind, "task_id": task_id, "ts": ts}
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, str):
            if key in _FREE_TEXT:
                value = clean_text(value)
            limit = FIELDS[key][1]
            if limit is not None and len(value) > limit:
                value = clip(value, limit)
        event[key] = value
    return event


# Text a task's code or arguments produce, which may hold anything; ids and names come from
# Celery and are checked by the monitor instead (this runs in every task's hot path).
_FREE_TEXT: Final = frozenset(
    {"input_id", "args", "kwargs", "args_dropped", "exc_type", "exc_message", "traceback"}
)


def encode_batch(events: Sequence[Event]) -> dict[bytes, bytes]:
    """Pack events into the fields of one stream entry."""
    return {ENTRY_FIELD: msgpack.packb(list(events), use_bin_type=True)}


@dataclass(frozen=True)
class Rejected:
    """Something in an entry that is not a valid event, and why."""

    reason: str
    raw: Any


def decode_entry(fields: Mapping[bytes, bytes]) -> tuple[list[Event], list[Rejected]]:
    """Unpack one stream entry into valid events and rejected items. Never raises."""
    packed = fields.get(ENTRY_FIELD)
    if packed is None:
        return [], [Rejected("entry has no 'e' field", dict(fields))]
    if len(packed) > MAX_ENTRY_BYTES:
        return [], [Rejected(f"entry larger than {MAX_ENTRY_BYTES} bytes", packed[:1024])]
    try:
        items = msgpack.unpackb(packed, raw=False, strict_map_key=True)
    except Exception as exc:  # any bytes may arrive here
        return [], [Rejected(f"not msgpack: {type(exc).__name__}: {exc}", packed[:4096])]
    if not isinstance(items, list):
        return [], [Rejected("entry is not a list of events", packed[:4096])]
    events: list[Event] = []
    rejected: list[Rejected] = []
    for item in items:
        reason = validate_event(item)
        if reason is None:
            events.append(_storable(item))
        else:
            rejected.append(Rejected(reason, item))
    return events, rejected


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

"""Bounds on what one event may write, applied before it is merged.

Events are untrusted: anyone who can publish a task or run code in a worker writes into the stream.
The decoder (``tasktrail.events``) checks types and lengths; this module makes each event safe to
store and show:

- one-line text (names, queue, host, ids shown on pages) has control characters replaced (CR/LF
  would forge log lines; bidi controls make a page read differently from what is stored) and is cut
  to 255 characters; messages and tracebacks are cut to the schema's caps;
- arguments longer than ``TASKTRAIL_MAX_ARGS_BYTES`` are not kept, as the recorder does (a cut JSON
  document could not be retried), and ``args_dropped`` says why;
- times are checked against the monitor's receive time of the entry (``RX``, the Redis stream entry
  id's milliseconds: the server sets it, a producer adding with ``*`` cannot choose it). A time more
  than ``MAX_AHEAD`` after it or ``MAX_BEHIND`` before it is replaced by the receive time and the
  row is flagged ``times_clamped``. Events never held longer than a flush interval (0.1 s) in their
  process unless Redis was down; a day covers clock skew and an outage, and a forged time can move a
  task no further than that.

An event whose attempt (``retries``) is over ``MAX_ATTEMPT`` is not merged but dead-lettered
(``admit``): no real task retries a thousand times, and each attempt number is a row.

Every function here is pure in the event (and its entry id), so re-delivery gives the same result.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import Any, Final

from django.conf import settings

from tasktrail.events import MAX_MESSAGE, MAX_NAME, MAX_TRACEBACK, Event, Rejected, clip

RX: Final = "rx"  # the event's receive time, ms since the epoch (set by the monitor)
RX_SEQ: Final = "rx_seq"  # the entry's sequence number within that ms
CLAMPED: Final = "clamped"  # set on an event whose times were replaced by RX
MAX_AHEAD: Final = 86_400.0
MAX_BEHIND: Final = 86_400.0
# The highest attempt number taken (Celery's ``retries``; the merge's success key holds 10 bits).
MAX_ATTEMPT: Final = 1000

# C0, DEL, C1, the bidi embeddings/overrides/isolates and marks, and the line/paragraph separators
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
REPLACEMENT: Final = "\ufffd"

_ONE_LINE: Final = (
    "name",
    "queue",
    "hostname",
    "exc_type",
    "input_id",
    "args_dropped",
    "parent_id",
    "root_id",
    "group_id",
    "retry_of",
)
_CAPS: Final = {"exc_message": MAX_MESSAGE, "traceback": MAX_TRACEBACK, "arg_names": 4096}
_TIMES: Final = ("ts", "published_at")


def one_line(text: str, limit: int = MAX_NAME) -> str:
    """``text`` without control characters (each replaced by U+FFFD), cut to ``limit``."""
    if text.isprintable():  # every character _CONTROL matches is not (Cc, Cf, Zl, Zp): none here
        return text[:limit]
    return _CONTROL.sub(REPLACEMENT, text)[:limit]


def received_at(entry_id: bytes | str, now: float | None = None) -> tuple[int, int]:
    """The receive time of a stream entry, ms, and its sequence number within that ms: its id's
    parts (set by Redis with ``*``).

    An id ahead of the monitor's clock by more than ``MAX_AHEAD`` was chosen by its producer (an
    explicit id): the monitor's own clock is used instead."""
    raw = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    now_ms = int((time.time() if now is None else now) * 1000)
    try:
        ms_text, _, seq_text = raw.partition("-")
        ms, seq = int(ms_text), int(seq_text or 0)
    except ValueError:
        return now_ms, 0
    if ms > now_ms + MAX_AHEAD * 1000:
        return now_ms, 0
    return ms, seq


def stamp_received(entry_id: bytes | str, events: Iterable[Event]) -> list[Event]:
    """The events of one entry, each carrying the entry's receive time."""
    ms, seq = received_at(entry_id)
    return [{**event, RX: ms, RX_SEQ: seq} for event in events]


def admit(entry_id: bytes | str, events: Iterable[Event]) -> tuple[list[Event], list[Rejected]]:
    """The events of one entry stamped with its receive time, and those refused: an attempt over
    ``MAX_ATTEMPT`` (one dead letter for the lot, counting them, with the first as sample)."""
    ms, seq = received_at(entry_id)
    admitted: list[Event] = []
    refused: list[Event] = []
    for event in events:
        retries = event.get("retries")
        if isinstance(retries, int) and retries > MAX_ATTEMPT:
            refused.append(event)
        else:
            admitted.append({**event, RX: ms, RX_SEQ: seq})
    if not refused:
        return admitted, []
    why = f"attempt over {MAX_ATTEMPT} (retries {refused[0]['retries']})"
    return admitted, [Rejected(why, refused[0], count=len(refused))]


def _args_size(event: Event) -> int:
    return sum(
        len(event[k].encode("utf-8", "surrogatepass"))
        for k in ("args", "kwargs")
        if isinstance(event.get(k), str)
    )


def bound_event(event: Event) -> Event:
    """A copy of ``event`` within the bounds above (the same copy for the same event)."""
    out: dict[str, Any] = dict(event)
    for key in _ONE_LINE:
        value = out.get(key)
        if isinstance(value, str):
            out[key] = one_line(value)
    for key, limit in _CAPS.items():
        value = out.get(key)
        if isinstance(value, str) and len(value) > limit:
            out[key] = clip(value, limit)
    cap = int(settings.TASKTRAIL_MAX_ARGS_BYTES)
    size = _args_size(out)
    if size > cap:
        out["args"] = out["kwargs"] = None
        out["args_dropped"] = f"too large: {size} bytes over the {cap}-byte cap (at ingest)"
    rx = out.get(RX)
    if isinstance(rx, int):
        received = rx / 1000
        for key in _TIMES:
            value = out.get(key)
            if value is None:
                continue
            if not received - MAX_BEHIND <= float(value) <= received + MAX_AHEAD:
                out[key] = received
                out[CLAMPED] = True
    return out

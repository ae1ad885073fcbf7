"""Trace ids taken from a W3C ``traceparent`` header.

The Celery instrumentation injects ``traceparent`` into each message's headers; reading the ids from
there (rather than from whichever span happens to be current in a signal receiver) does not depend
on the order receivers were connected in. Pure Python, no OpenTelemetry import: the recorder uses it
in processes that may not trace at all.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_INVALID_TRACE_ID = "0" * 32
_INVALID_SPAN_ID = "0" * 16


class TraceParent(NamedTuple):
    trace_id: str
    span_id: str
    sampled: bool


def parse_traceparent(value: object) -> TraceParent | None:
    """Return the ids in a ``traceparent`` value, or None when it is absent or malformed."""
    if not isinstance(value, str):
        return None
    match = _TRACEPARENT.match(value.strip().lower())
    if match is None:
        return None
    version, trace_id, span_id, flags = match.groups()
    if version == "ff" or trace_id == _INVALID_TRACE_ID or span_id == _INVALID_SPAN_ID:
        return None
    return TraceParent(trace_id=trace_id, span_id=span_id, sampled=bool(int(flags, 16) & 0x01))

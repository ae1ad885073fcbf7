"""Trace ids taken from a W3C ``traceparent`` header.

The Celery instrumentation injects ``traceparent`` into each message's headers; reading the ids from
there (rather than from whichever span happens to be current in a signal receiver) does not depend
on the order receivers were connected in. Pure Python, no OpenTelemetry import: the recorder uses it
in processes that may not trace at all.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, NamedTuple

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


# -- the run span of the attempt in progress -----------------------------------------------------

_span_readers: tuple[Callable[..., Any], Callable[[], Any]] | None = None
_no_opentelemetry = False


def _not_kept(task: Any, task_id: str) -> None:
    return None


def _readers() -> tuple[Callable[..., Any], Callable[[], Any]] | None:
    """The two ways to find the run span, imported on first use (None without OpenTelemetry)."""
    global _span_readers, _no_opentelemetry
    if _span_readers is None and not _no_opentelemetry:
        try:
            from opentelemetry.trace import get_current_span
        except ImportError:
            _no_opentelemetry = True
            return None
        retrieve: Callable[..., Any] = _not_kept
        try:
            from opentelemetry.instrumentation.celery import utils as instrumentation
        except ImportError:
            pass
        else:
            retrieve = instrumentation.retrieve_context
        _span_readers = (retrieve, get_current_span)
    return _span_readers


def run_span_id(task: Any, task_id: str) -> str | None:
    """The span id (16 hex digits) of the span running ``task_id`` now, when it is sampled.

    Called from the recorder's ``task_success`` / ``task_failure`` / ``task_retry`` receivers: the
    instrumentation starts the run span in ``task_prerun`` and ends it in ``task_postrun``, so it
    exists during those signals whichever receiver runs first. It is looked up where the
    instrumentation keeps it (per task id), and otherwise taken as the current span (another
    instrumentation); a span the task body left current cannot be mistaken for it that way.
    Cheap when tracing is off: no span, one dictionary lookup and one context-variable read.
    """
    readers = _readers()
    if readers is None or not task_id:
        return None
    retrieve_context, get_current_span = readers
    try:
        entry = retrieve_context(task, task_id)
        span = entry[0] if entry else get_current_span()
        span_context = span.get_span_context()
    except Exception:  # a foreign task object, a changed internal: no span id, never an error
        return None
    if not span_context.is_valid or not span_context.trace_flags.sampled:
        return None
    return format(span_context.span_id, "016x")

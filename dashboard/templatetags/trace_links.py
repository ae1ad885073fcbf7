"""Links to a task's trace in the configured viewer (``TASKTRAIL_TRACE_VIEWER``, tracing.links).

Nothing is rendered when no viewer is configured, the task has no trace id, or its trace was not
sampled (the viewer would have nothing to show).
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from django import template
from django.conf import settings
from django.utils.html import format_html
from django.utils.safestring import SafeString

from tracing.links import TraceViewer, parse_viewer

register = template.Library()


@functools.lru_cache(maxsize=4)
def _viewer_for(value: str) -> TraceViewer | None:
    return parse_viewer(value)  # validated at start-up by the settings


def viewer() -> TraceViewer | None:
    return _viewer_for(str(getattr(settings, "TASKTRAIL_TRACE_VIEWER", "") or ""))


def _traced(task: Any) -> bool:
    return bool(getattr(task, "trace_id", None)) and getattr(task, "trace_sampled", None) is True


def _first(*values: dt.datetime | None) -> dt.datetime | None:
    return next((v for v in values if v is not None), None)


def task_trace_url(task: Any) -> str | None:
    found = viewer()
    if found is None or not _traced(task):
        return None
    start = _first(getattr(task, "published_at", None), getattr(task, "first_seen_at", None))
    end = _first(getattr(task, "finished_at", None), getattr(task, "updated_at", None))
    return found.trace_url(task.trace_id, start, end)


def attempt_span_url(task: Any, attempt: Any) -> str | None:
    found = viewer()
    if found is None or not _traced(task):
        return None
    start = _first(getattr(attempt, "published_at", None), getattr(attempt, "started_at", None))
    end = _first(getattr(attempt, "finished_at", None), start)
    return found.span_url(task.trace_id, getattr(attempt, "span_id", None), start, end)


def _link(url: str | None, label: str, title: str) -> SafeString | str:
    if not url:
        return ""
    return format_html(
        '<a class="trace-link" href="{}" target="_blank" rel="noopener noreferrer" title="{}">'
        "{}</a>",
        url,
        title,
        label,
    )


@register.simple_tag
def trace_link(task: Any, label: str = "trace") -> SafeString | str:
    """A link to the task's whole trace."""
    found = viewer()
    name = found.name if found else ""
    title = f"Open trace {getattr(task, 'trace_id', '')} in {name}"
    return _link(task_trace_url(task), label, title)


@register.simple_tag
def attempt_trace_link(task: Any, attempt: Any, label: str = "span") -> SafeString | str:
    """A link to the trace with this attempt's run span selected, where the viewer can."""
    span_id = getattr(attempt, "span_id", None) or ""
    title = f"Open the run span {span_id} of this attempt" if span_id else "Open the trace"
    return _link(attempt_span_url(task, attempt), label if span_id else "trace", title)

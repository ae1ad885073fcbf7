"""Formatting for task values: durations, relative times, state badges."""

from __future__ import annotations

import datetime as dt

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from dashboard.models import TaskState

register = template.Library()

STATE_SYMBOLS: dict[str, str] = {
    TaskState.PENDING: "○",
    TaskState.RECEIVED: "◔",
    TaskState.STARTED: "◑",
    TaskState.RETRY: "↻",
    TaskState.SUCCESS: "✓",
    TaskState.FAILURE: "✕",
    TaskState.REVOKED: "⊘",
    TaskState.REJECTED: "⊗",
    TaskState.LOST: "⚠",
}
QUEUE_STATE_SYMBOLS: dict[str, str] = {"ok": "✓", "warning": "◔", "stuck": "✕"}


@register.filter
def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def _ago(delta: dt.timedelta) -> str:
    seconds = delta.total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 60:
        text = f"{seconds:.0f}s"
    elif seconds < 3600:
        text = f"{seconds // 60:.0f}m"
    elif seconds < 86400:
        text = f"{seconds // 3600:.0f}h"
    else:
        text = f"{seconds // 86400:.0f}d"
    return f"in {text}" if future else f"{text} ago"


@register.simple_tag
def when(value: dt.datetime | None) -> SafeString | str:
    """Relative time with the absolute UTC time on hover (and for screen readers)."""
    if value is None:
        return "—"
    absolute = value.astimezone(dt.UTC)
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        absolute.isoformat(),
        absolute.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC",
        _ago(timezone.now() - value),
    )


@register.simple_tag
def state_badge(state: str) -> SafeString:
    label = TaskState(state).label if state in TaskState.values else state
    return format_html(
        '<span class="badge state-{}" title="{}"><span aria-hidden="true">{}</span> {}</span>',
        state.lower(),
        label,
        STATE_SYMBOLS.get(state, "?"),
        state,
    )


@register.simple_tag
def queue_state_badge(state: str | None, words: str = "") -> SafeString:
    """ok / warning / stuck from the monitor's latest check; "—" when there is none."""
    if state not in QUEUE_STATE_SYMBOLS:
        return format_html(
            '<span class="badge qstate-unknown" title="{}">—</span>',
            "No recent check: is the monitor running with alerts on?",
        )
    return format_html(
        '<span class="badge qstate-{}" title="{}"><span aria-hidden="true">{}</span> {}</span>',
        state,
        words or state,
        QUEUE_STATE_SYMBOLS[state],
        state,
    )


@register.filter
def percent(value: float) -> str:
    return f"{value * 100:.1f}%"


@register.simple_tag
def sparkline(values: list[int]) -> SafeString | str:
    """Inline SVG bars; the numbers are also in the title for keyboard and screen-reader users."""
    if not values:
        return ""
    peak = max(values) or 1
    width, height = 4 * len(values), 20
    bars = "".join(
        f'<rect x="{i * 4}" y="{height - max(1, round(v / peak * height))}" width="3" '
        f'height="{max(1, round(v / peak * height))}"></rect>'
        for i, v in enumerate(values)
    )
    return format_html(
        '<svg class="spark" role="img" width="{}" height="{}" viewBox="0 0 {} {}">'
        "<title>{}</title>{}</svg>",
        width,
        height,
        width,
        height,
        "finished per 5 minutes: " + ", ".join(map(str, values)),
        SafeString(bars),  # built from integers only
    )


@register.filter
def get_item(mapping: dict[str, object], key: str) -> object:
    return mapping.get(key)


@register.filter
def redacted_call(task: object) -> object:
    """The task's recorded call with secrets masked (see dashboard.redaction)."""
    from django.conf import settings

    from dashboard.redaction import redacted_call as shown

    return shown(
        getattr(task, "args", None),
        getattr(task, "kwargs", None),
        getattr(task, "arg_names", None),
        settings.TASKTRAIL_REDACT_KEYS,
    )

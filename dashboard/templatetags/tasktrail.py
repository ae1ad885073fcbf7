"""Formatting for task values: durations, times in the viewer's zone, state badges, lineage."""

from __future__ import annotations

import datetime as dt
import re
from typing import Final

from django import template
from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from dashboard.models import TaskRun, TaskState
from dashboard.selectors.live import row_version

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


def _zone(local: dt.datetime) -> str:
    return local.strftime("%Z") or local.strftime("UTC%z")


def _absolute(value: dt.datetime, now: dt.datetime, *, zone: bool = True) -> str:
    """In the active zone, to the second, the zone named (unless a column header names it); the
    date only when it is not today."""
    local, today = timezone.localtime(value), timezone.localtime(now)
    clock = local.strftime("%H:%M:%S") + (f" {_zone(local)}" if zone else "")
    if local.date() == today.date():
        return clock
    if local.year == today.year:
        return f"{local.day} {local.strftime('%b')} {clock}"
    return f"{local.day} {local.strftime('%b %Y')} {clock}"


@register.simple_tag
def zone_name() -> str:
    """The active zone's abbreviation now ("CET"), for a column header that names it once."""
    return _zone(timezone.localtime(timezone.now()))


@register.simple_tag
def when(value: dt.datetime | None, zone: bool = True) -> SafeString | str:
    """The time in the viewer's zone with the zone named, and how long ago beside it.
    ``zone=False`` where the column header names the zone (``zone_name``); the title has it.

    ``datetime`` carries the instant, so tasktrail.js keeps the "ago" text current."""
    if value is None:
        return "—"
    now = timezone.now()
    local = timezone.localtime(value)
    return format_html(
        '<time class="when" datetime="{}" title="{}">{} <span class="ago">{}</span></time>',
        value.astimezone(dt.UTC).isoformat(),
        local.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + f" {timezone.get_current_timezone_name()}",
        _absolute(value, now, zone=zone),
        _ago(now - value),
    )


@register.filter
def class_name(dotted: str | None) -> str:
    """An exception's class without its module (``shop.errors.PaymentDeclined`` ->
    ``PaymentDeclined``), for a narrow column; the full name goes in a title."""
    return (dotted or "").rsplit(".", 1)[-1]


# Characters that reorder the text around them (overrides, embeddings, isolates, marks): in a
# task name, queue or hostname they could make "shop.refund" read as another task in a prompt.
BIDI_CONTROLS: Final = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _visible(match: re.Match[str]) -> str:
    return f"[U+{ord(match[0]):04X}]"


@register.filter(is_safe=True)
def bidi_safe(value: object) -> str:
    """``value`` with each bidirectional control shown as a visible marker (``[U+202E]``), so a
    name cannot reorder the text of a prompt, a title or a table. Rows stored before the monitor
    stripped them at ingest still hold them."""
    if value is None:
        return ""
    return BIDI_CONTROLS.sub(_visible, str(value))


@register.filter
def task_label(name: str | None, prefix: str = "") -> str:
    """A task's name without the module path all recorded names share (``prefix``, from
    ``selectors.tasks.task_name_prefix``): ``workers.tasks.send_invoice`` → ``send_invoice``, while
    ``shop.billing.send`` and ``shop.mail.send`` stay apart. The full name goes in a title.
    Bidirectional controls are shown as markers (``bidi_safe``)."""
    if not name:
        return ""
    if prefix and name.startswith(prefix) and len(name) > len(prefix):
        return bidi_safe(name[len(prefix) :])
    return bidi_safe(name)


def _short_id(task_id: str) -> str:
    return task_id[:8] + "…" if len(task_id) > 9 else task_id


@register.simple_tag
def lineage(retry_of: str | None, retried_as: str | None) -> SafeString | str:
    """Links to the task this one retries and to the retry made of it, when there are any."""
    parts = []
    if retry_of:
        parts.append(
            format_html(
                'retry of <a class="mono" href="{}" title="{}">{}</a>',
                reverse("task-detail", args=[retry_of]),
                retry_of,
                _short_id(retry_of),
            )
        )
    if retried_as:
        parts.append(
            format_html(
                'retried as <a class="mono" href="{}" title="{}">{}</a>',
                reverse("task-detail", args=[retried_as]),
                retried_as,
                _short_id(retried_as),
            )
        )
    if not parts:
        return ""
    return format_html('<span class="lineage">{}</span>', SafeString(" · ".join(parts)))


@register.filter
def live_version(task: TaskRun) -> str:
    """What the live list compares to know the row changed ("" once it cannot change)."""
    return row_version(task)


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
    from dashboard.redaction import redacted_call as shown
    from dashboard.selectors.arg_names import known_arg_names

    return shown(
        getattr(task, "args", None),
        getattr(task, "kwargs", None),
        getattr(task, "arg_names", None),
        settings.TASKTRAIL_REDACT_KEYS,
        name=getattr(task, "name", None),
        names_of=known_arg_names(),
    )


@register.filter
def scrubbed(text: str | None) -> str:
    """Free text a task produced (an error message, a traceback) with secret-looking values
    masked: ``token='…'``, ``"password": "…"``, ``Authorization: Bearer …``, URL passwords."""
    from dashboard.redaction import scrub_text

    return scrub_text(text, settings.TASKTRAIL_REDACT_KEYS) if text else ""

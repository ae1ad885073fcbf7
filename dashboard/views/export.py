"""CSV export of the Tasks list's current filter: streamed, capped, secrets masked, injection-safe.

Spreadsheets run a cell that starts with ``=``, ``+``, ``-`` or ``@`` (and tab or carriage return)
as a formula, and task inputs, error messages and names come from outside: such cells get a
leading ``'`` so they read as text.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from typing import Any, Final

from django.conf import settings
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from dashboard.filters import FilterError, TaskFilter, parse_task_filter
from dashboard.models import TaskRun
from dashboard.redaction import redacted_call, scrub_text
from dashboard.selectors.export import export_task_runs
from dashboard.views.access import VIEW_TASKS

DEFAULT_MAX_ROWS: Final = 100_000
HEADER: Final = (
    "task_id", "name", "state", "queue", "input_id", "retries", "worker", "first_seen_at",
    "published_at", "started_at", "finished_at", "runtime_seconds", "queue_wait_seconds",
    "exc_type", "exc_message", "retry_of", "retried_as", "trace_id", "args", "kwargs",
)  # fmt: skip
FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")
_JSON_BREAKS = re.compile(r"\n\s*")  # the pretty JSON the pages show, on one line


def max_rows() -> int:
    return int(getattr(settings, "TASKTRAIL_EXPORT_MAX_ROWS", DEFAULT_MAX_ROWS))


def safe_cell(value: Any) -> str:
    if value is None:
        return ""
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def _one_line(shown: str | None) -> str | None:
    return None if shown is None else _JSON_BREAKS.sub("", shown)


def task_cells(task: TaskRun) -> list[str]:
    keys = settings.TASKTRAIL_REDACT_KEYS
    call = redacted_call(task.args, task.kwargs, task.arg_names, keys, name=task.name)
    args = _one_line(call.args) if task.args is not None else f"(not kept: {task.args_dropped})"
    values = (
        task.task_id, task.name, task.state, task.queue, task.input_id, task.retries, task.worker,
        task.first_seen_at, task.published_at, task.started_at, task.finished_at, task.runtime,
        task.queue_wait, task.exc_type, scrub_text(task.exc_message, keys), task.retry_of,
        task.retried_as, task.trace_id, args, _one_line(call.kwargs),
    )  # fmt: skip
    return [safe_cell(v) for v in values]


class _Line:
    """A file-like target for csv.writer that hands back the line it was given."""

    def write(self, value: str) -> str:
        return value


def csv_lines(tasks: Iterable[TaskRun], cap: int) -> Iterator[bytes]:
    writer = csv.writer(_Line())

    def encoded(cells: Iterable[str]) -> bytes:
        # A lone surrogate (SQLite keeps one) would stop the stream half way: escape it.
        return str(writer.writerow(cells)).encode("utf-8", "backslashreplace")

    yield "\ufeff".encode()  # spreadsheets read the file as UTF-8
    yield encoded(HEADER)
    for count, task in enumerate(tasks, start=1):
        if count > cap:
            yield encoded(
                [f"# cut at {cap} rows (TASKTRAIL_EXPORT_MAX_ROWS): narrow the filter for the rest"]
            )
            return
        yield encoded(task_cells(task))


def filename(task_filter: TaskFilter) -> str:
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    return f"tasktrail-tasks-{stamp}{'' if task_filter.is_empty else '-filtered'}.csv"


@require_GET
@login_required
@permission_required(VIEW_TASKS, raise_exception=True)  # viewer_required, for a streamed answer
def tasks_export_csv(request: HttpRequest) -> HttpResponseBase:
    try:
        task_filter = parse_task_filter(request.GET)
    except FilterError as exc:
        return render(request, "dashboard/bad_request.html", {"message": str(exc)}, status=400)
    cap = max_rows()
    rows = export_task_runs(task_filter=task_filter, limit=cap)
    response = StreamingHttpResponse(csv_lines(rows, cap), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename(task_filter)}"'
    response["Cache-Control"] = "no-store"  # task inputs, even masked, stay off shared caches
    return response

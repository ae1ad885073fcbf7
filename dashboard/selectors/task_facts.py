"""What the task page says about how a task ended: its error line and how long it ran.

A terminated task's revoked event carries a message ("terminated (signal 15)") but neither an
exception type nor a runtime: the worker's main process reports it, not the code that ran.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from dashboard.constants import REVOKED
from dashboard.models import TaskAttempt, TaskRun


@dataclass(frozen=True)
class ErrorLine:
    kind: str  # the exception type, or "" when none was reported
    text: str


def error_line(task: TaskRun) -> ErrorLine | None:
    """The task's last error as a sentence: never the word None for a missing type."""
    if not task.exc_type and not task.exc_message:
        return None
    message = task.exc_message or ""
    if not task.exc_type and task.state == REVOKED and message.startswith("terminated"):
        rest = message.removeprefix("terminated").strip()
        by = "by an operator" if task.terminate_requested_at else ""
        return ErrorLine("", " ".join(part for part in ("Terminated", by, rest) if part))
    if not task.exc_type:
        return ErrorLine("", message[:1].upper() + message[1:])
    return ErrorLine(task.exc_type, message)


def run_seconds(
    started: dt.datetime | None, finished: dt.datetime | None, runtime: float | None
) -> float | None:
    """The reported runtime, else the time from start to finish when both are known."""
    if runtime is not None:
        return runtime
    if started is None or finished is None or finished < started:
        return None
    return (finished - started).total_seconds()


def fill_runtimes(task: TaskRun, attempts: list[TaskAttempt]) -> None:
    """Give rows without a reported runtime the one their start and finish imply (for display;
    the rows are not saved)."""
    task.runtime = run_seconds(task.started_at, task.finished_at, task.runtime)
    for attempt in attempts:
        attempt.runtime = run_seconds(attempt.started_at, attempt.finished_at, attempt.runtime)

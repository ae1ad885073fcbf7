"""The task page's error line and runtime for rows whose events left parts unsaid."""

from __future__ import annotations

import datetime as dt

from dashboard.models import TaskRun
from dashboard.selectors.task_facts import ErrorLine, error_line, run_seconds

T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)


def test_error_line_keeps_the_exception_type():
    task = TaskRun(state="FAILURE", exc_type="ValueError", exc_message="boom")
    assert error_line(task) == ErrorLine("ValueError", "boom")


def test_error_line_of_a_task_terminated_without_an_operator_names_no_one():
    task = TaskRun(state="REVOKED", exc_message="terminated (signal 9)")
    assert error_line(task) == ErrorLine("", "Terminated (signal 9)")


def test_error_line_of_a_task_terminated_by_an_operator_says_so():
    task = TaskRun(state="REVOKED", exc_message="terminated (signal 15)", terminate_requested_at=T0)
    assert error_line(task) == ErrorLine("", "Terminated by an operator (signal 15)")


def test_error_line_without_a_type_starts_with_a_capital():
    task = TaskRun(state="REVOKED", exc_message="revoked before it started")
    assert error_line(task) == ErrorLine("", "Revoked before it started")


def test_error_line_of_a_task_without_error_is_none():
    assert error_line(TaskRun(state="SUCCESS")) is None


def test_run_seconds_prefers_the_reported_runtime():
    assert run_seconds(T0, T0 + dt.timedelta(seconds=23), 1.5) == 1.5


def test_run_seconds_without_runtime_is_start_to_finish():
    assert run_seconds(T0, T0 + dt.timedelta(seconds=23), None) == 23.0


def test_run_seconds_without_a_start_is_unknown():
    assert run_seconds(None, T0, None) is None

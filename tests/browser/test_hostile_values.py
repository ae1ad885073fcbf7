"""Hostile task values in a real browser: the task list and the task pages of rows whose every
value is a script, an attribute breaker, a javascript: URL, invalid UTF-8, control characters,
1 MB or an RTL override. No injected script runs (``window.__pwned`` stays undefined), no dialog
opens, no policy violation or error is logged (the ``page`` fixture fails on either)."""

from __future__ import annotations

from typing import Any

from django.urls import reverse

from tests.security.conftest import HOSTILE, KINDS, MARK, record_hostile


def pwned(page: Any) -> Any:
    return page.evaluate(f"() => window.{MARK}")


def test_hostile_rows_run_no_script_in_the_task_list(logged_in):
    for kind in KINDS:
        record_hostile(kind)
    page = logged_in("/tasks/")
    page.locator("#results tbody tr").first.wait_for()
    assert page.locator("#results tbody tr").count() == 2 * len(KINDS)
    page.wait_for_timeout(3_500)  # one live poll of the list (every 3 s)
    assert pwned(page) is None


def test_hostile_rows_run_no_script_on_their_task_pages(logged_in):
    rows = [record_hostile(kind) for kind in KINDS]
    page = logged_in("/tasks/")
    for row in rows:
        for task_id in (row.task_id, row.running_id):
            page.goto(reverse("task-detail", args=[task_id]))
            page.get_by_role("heading", name="Arguments").wait_for()
            assert pwned(page) is None, row.kind
            if row.kind == "script":  # shown as the text it is
                assert HOSTILE["script"] in page.locator("dd.mono").first.inner_text()

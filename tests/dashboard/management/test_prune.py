"""``manage.py prune``: the dry run changes nothing; a pass under way makes another refuse, or
wait with --wait."""

from __future__ import annotations

import io
import os
import sys

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from dashboard.models import TaskAttempt, TaskRun
from dashboard.retention.runner import lease_for
from tests.dashboard.retention import rows
from tests.dashboard.retention.rows import task
from tests.integration.conftest import database_url_for_children
from tests.processes import Child, spawn

pytestmark = pytest.mark.django_db(transaction=True)


def exit_code(child: Child) -> int:
    code = child.process.wait(90)
    child.output.join(5)
    return code


@pytest.fixture(autouse=True)
def _rows_aged_from_now(monkeypatch) -> None:
    """The command prunes at the real "now": rows are aged from it."""
    monkeypatch.setattr(rows, "NOW", timezone.now())


def old_and_new(settings_) -> tuple[set[str], set[str]]:
    settings_.TASKTRAIL_RETENTION_DAYS = 14
    settings_.TASKTRAIL_RETENTION_FAILED_DAYS = 30
    old = {task("SUCCESS", finished=20, attempts=2), task("FAILURE", finished=40)}
    new = {task("SUCCESS", finished=1), task("FAILURE", finished=20)}
    return old, new


def test_dry_run_shows_counts_and_cutoffs_and_changes_nothing(redis_client, settings):
    old, new = old_and_new(settings)
    out = io.StringIO()
    call_command("prune", "--dry-run", stdout=out)
    text = out.getvalue()
    assert "Would remove:" in text
    assert "TaskRun                2" in text and "TaskAttempt            3" in text
    assert "(14 days)" in text and "(30 days)" in text
    assert set(TaskRun.objects.values_list("task_id", flat=True)) == old | new
    assert TaskAttempt.objects.count() == 5

    out = io.StringIO()
    call_command("prune", stdout=out)
    assert "Removed:" in out.getvalue() and "TaskRun                2" in out.getvalue()
    assert set(TaskRun.objects.values_list("task_id", flat=True)) == new


def test_zero_keeps_forever_and_says_so(redis_client, settings):
    old_and_new(settings)
    settings.TASKTRAIL_RETENTION_DAYS = 0
    out = io.StringIO()
    call_command("prune", "--dry-run", stdout=out)
    assert "kept forever (0 days)" in out.getvalue()
    assert "TaskRun                1" in out.getvalue()  # the old failure only


def test_bad_options_are_refused_with_the_reason(redis_client):
    with pytest.raises(CommandError, match="at least 1"):
        call_command("prune", "--batch", "0")
    with pytest.raises(CommandError, match="seconds"):
        call_command("prune", "--wait", "soon")


def test_another_pass_holding_the_lease_refuses_or_is_waited_for(redis_client, settings):
    _old, new = old_and_new(settings)
    lease = lease_for(redis_client)
    assert lease.acquire()
    env = {
        **os.environ,
        "REDIS_URL": settings.REDIS_URL,
        "DATABASE_URL": database_url_for_children(),
        "TASKTRAIL_STREAM": settings.TASKTRAIL_STREAM,
    }
    refused = spawn([sys.executable, "manage.py", "prune"], env)
    assert exit_code(refused) != 0
    assert "another retention pass is running" in refused.output.text
    assert lease.token in refused.output.text
    assert "--wait" in refused.output.text
    assert TaskRun.objects.count() == 4

    waiting = spawn([sys.executable, "manage.py", "prune", "--wait", "60"], env)
    try:
        waiting.output.wait_for("waiting up to 60s", 60)
        assert TaskRun.objects.count() == 4  # still waiting: nothing removed
        lease.release()
        assert exit_code(waiting) == 0, waiting.output.text
    finally:
        waiting.stop()
    assert "Removed:" in waiting.output.text
    assert set(TaskRun.objects.values_list("task_id", flat=True)) == new


def test_a_dry_run_runs_while_another_pass_holds_the_lease(redis_client, settings):
    old, new = old_and_new(settings)
    lease = lease_for(redis_client)
    assert lease.acquire()
    try:
        out = io.StringIO()
        call_command("prune", "--dry-run", stdout=out)  # counts only: no lease, no refusal
        assert "Would remove:" in out.getvalue() and "TaskRun                2" in out.getvalue()
        assert set(TaskRun.objects.values_list("task_id", flat=True)) == old | new
        assert lease.holder() == lease.token  # the holder's lease is untouched
        with pytest.raises(CommandError, match="another retention pass is running"):
            call_command("prune")
    finally:
        lease.release()

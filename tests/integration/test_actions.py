"""Operator actions against real workers: retry, durable cancel across a worker start, terminate."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User

from dashboard.models import TaskAttempt, TaskRun
from dashboard.services import task_run_cancel, task_run_retry, task_run_terminate
from tests.integration.conftest import wait_until
from workers.tasks import build_report, send_invoice

pytestmark = pytest.mark.integration


def user_in(role: str) -> User:
    user = User.objects.create_user(f"it-{role}")
    user.groups.add(Group.objects.get(name=role))
    return User.objects.get(pk=user.pk)


def row(task_id, **conditions):
    return lambda: TaskRun.objects.filter(task_id=task_id, **conditions).first()


def test_retry_of_a_failed_task_runs_with_the_original_args_and_links_both_ways(
    worker, redis_client
):
    original = send_invoice.delay(1237, email="ops@example.com")
    wait_until(redis_client, row(original.id, state="FAILURE"), what="original failure")
    result = task_run_retry(user=user_in("operator"), task_id=original.id, reason="VAT fixed")
    new_id = result.new_task_ids[original.id]
    retry = wait_until(redis_client, row(new_id, finished_at__isnull=False), what="retry finished")
    assert retry.retry_of == original.id
    assert TaskRun.objects.get(task_id=original.id).retried_as == new_id
    assert (retry.name, retry.queue, retry.input_id) == (
        "workers.tasks.send_invoice",
        "default",
        "1237",
    )
    assert retry.args == "[1237]" and retry.kwargs == '{"email":"ops@example.com"}'
    assert retry.exc_message == "invoice template missing VAT number for order 1237"  # same input


def test_cancel_then_a_worker_started_later_never_runs_it(start_worker, redis_client):
    queued = send_invoice.apply_async((555,), queue="isolated")  # no worker consumes it yet
    wait_until(redis_client, row(queued.id, state="PENDING"), what="pending row")
    result = task_run_cancel(user=user_in("operator"), task_id=queued.id, reason="order cancelled")
    assert result.done == [queued.id]
    start_worker(queues="isolated", name="late")
    revoked = wait_until(
        redis_client, row(queued.id, state="REVOKED"), what="revoked by late worker"
    )
    assert revoked.exc_message == "revoked before it started"
    assert not TaskAttempt.objects.filter(task_id=queued.id, started_at__isnull=False).exists()


def test_terminate_a_hung_task(worker, redis_client):
    hung = build_report.delay("R-42", seconds=120)
    wait_until(redis_client, row(hung.id, state="STARTED"), what="hung task started")
    result = task_run_terminate(user=user_in("admin"), task_id=hung.id, reason="stuck export")
    assert result.done == [hung.id]
    stopped = wait_until(redis_client, row(hung.id, finished_at__isnull=False), what="terminated")
    assert stopped.state == "REVOKED"
    assert "terminated" in stopped.exc_message

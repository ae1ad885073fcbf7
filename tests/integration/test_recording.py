"""Every kind of task outcome, end to end: publish → real worker → stream → monitor → rows."""

from __future__ import annotations

import json
import socket

import pytest
from celery import chain
from django_celery_results.models import TaskResult

from dashboard.models import TaskAttempt, TaskRun
from tests.integration import tasks as itasks
from tests.integration.conftest import wait_until
from workers.celery_app import app
from workers.tasks import book_shipment, charge_card, notify_customer, send_invoice, sync_inventory

pytestmark = pytest.mark.integration


def finished(task_id):
    def check():
        return TaskRun.objects.filter(task_id=task_id, finished_at__isnull=False).first()

    return check


def attempts(task_id):
    return list(TaskAttempt.objects.filter(task_id=task_id).order_by("attempt"))


def test_success(worker, redis_client):
    result = send_invoice.delay(1234)
    row = wait_until(redis_client, finished(result.id), what="success row")
    assert row.state == "SUCCESS"
    assert (row.name, row.queue, row.input_id) == ("workers.tasks.send_invoice", "default", "1234")
    assert row.retries == 0 and row.exc_type is None
    assert row.worker.startswith("itest@")
    assert row.published_at <= row.received_at <= row.started_at <= row.finished_at
    assert row.runtime > 0 and row.queue_wait >= 0
    assert json.loads(row.args) == [1234]
    [attempt] = attempts(result.id)
    assert (attempt.outcome, attempt.worker, attempt.pid > 0) == ("SUCCESS", row.worker, True)
    assert TaskResult.objects.get(task_id=result.id).status == "SUCCESS"


def test_failure_with_traceback(worker, redis_client):
    result = send_invoice.delay(1237)
    row = wait_until(redis_client, finished(result.id), what="failure row")
    assert row.state == "FAILURE"
    assert row.exc_type == "ValueError"
    assert row.exc_message == "invoice template missing VAT number for order 1237"
    [attempt] = attempts(result.id)
    assert "Traceback" in attempt.traceback and "send_invoice" in attempt.traceback


def test_celery_retry_with_countdown_records_each_attempt(worker, redis_client):
    result = charge_card.delay("PAY-77X", 500, card_token="tok_live_secret")
    row = wait_until(redis_client, finished(result.id), timeout=60, what="retried task to fail")
    assert (row.state, row.retries, row.exc_type) == ("FAILURE", 2, "workers.tasks.PaymentDeclined")
    assert [(a.attempt, a.outcome) for a in attempts(result.id)] == [
        (0, "RETRY"),
        (1, "RETRY"),
        (2, "FAILURE"),
    ]
    for a in attempts(result.id):
        assert a.started_at is not None and a.finished_at is not None
        assert a.exc_message == "card declined for payment PAY-77X"
    # the countdown shows as the next attempt's ETA, about a second after the retry was decided
    second = attempts(result.id)[1]
    assert second.eta is not None and second.queue_wait is not None


def test_autoretry_with_backoff_then_success(worker, redis_client):
    result = book_shipment.delay("SHP-1", fail_times=1)
    row = wait_until(redis_client, finished(result.id), timeout=60, what="shipment booked")
    assert (row.state, row.retries, row.input_id) == ("SUCCESS", 1, "SHP-1")
    assert [a.outcome for a in attempts(result.id)] == ["RETRY", "SUCCESS"]


def test_revoke_of_a_queued_task(worker, redis_client):
    result = itasks.nap.apply_async(("R-1", 0), countdown=3)
    # a worker holds the countdown message: received, still waiting (PENDING) until it is due
    wait_until(
        redis_client,
        lambda: TaskRun.objects.filter(task_id=result.id, received_at__isnull=False).exists(),
        what="received",
    )
    assert TaskRun.objects.get(task_id=result.id).state == "PENDING"
    app.control.revoke(result.id)
    row = wait_until(redis_client, finished(result.id), what="revoked row")
    assert row.state == "REVOKED"
    assert row.exc_message == "revoked before it started"
    assert not TaskAttempt.objects.filter(task_id=result.id, started_at__isnull=False).exists()


def test_unknown_task_name(worker, redis_client):
    result = app.send_task("workers.tasks.does_not_exist", args=["ORD-1"])
    row = wait_until(redis_client, finished(result.id), what="rejected row")
    assert row.state == "REJECTED"
    assert row.exc_type == "NotRegistered"
    assert row.name == "workers.tasks.does_not_exist"
    assert row.input_id == "ORD-1"  # default rule: the first positional string


def test_chain_records_parent_and_root(worker, redis_client):
    result = chain(sync_inventory.si("SKU-9"), notify_customer.si(42, "restocked")).delay()
    child = wait_until(redis_client, finished(result.id), what="second task of the chain")
    parent_id = result.parent.id
    # the parent ran in the other pool process: its events may arrive a flush interval later
    parent = wait_until(redis_client, finished(parent_id), what="first task of the chain")
    assert (parent.queue, parent.input_id, parent.state) == ("inventory", "SKU-9", "SUCCESS")
    assert (child.parent_id, child.root_id, child.input_id) == (parent_id, parent_id, "42")


def test_args_over_the_cap_still_run_and_say_why(worker, redis_client):
    result = send_invoice.delay(1, email="x" * 70_000)
    row = wait_until(redis_client, finished(result.id), what="large-args row")
    assert row.state == "SUCCESS"
    assert row.args is None and row.kwargs is None
    assert "too large" in row.args_dropped


def test_exception_message_with_html_is_stored_verbatim(worker, redis_client):
    message = "<img src=x onerror=alert(1)> & <script>alert('x')</script>"
    result = itasks.explode.delay("HTML-1", message)
    row = wait_until(redis_client, finished(result.id), what="html error row")
    assert row.exc_message == message  # stored as text; escaping is the templates' job


def test_non_utf8_bytes_in_an_error(worker, redis_client):
    result = itasks.explode_bytes.delay("BYTES-1")
    row = wait_until(redis_client, finished(result.id), what="non-utf8 error row")
    assert row.state == "FAILURE"
    assert row.exc_message.startswith("bad bytes: \\udcff\\udcfe")
    assert "\x00" not in row.exc_message


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_recorder_redis_unreachable_task_still_succeeds_and_loss_is_counted(
    start_worker, redis_client
):
    isolated = start_worker(
        queues="isolated",
        name="norecorder",
        env={"TASKTRAIL_RECORDER_URL": f"redis://127.0.0.1:{closed_port()}/0"},
    )
    result = send_invoice.apply_async((2001,), queue="isolated")
    assert result.get(timeout=30) == "invoice for order 2001 sent to customer@example.com"
    assert TaskResult.objects.get(task_id=result.id).status == "SUCCESS"
    isolated.stop()
    assert "Redis did not take the events" in isolated.log
    assert "events lost at shutdown: Redis did not take them (ConnectionError" in isolated.log


def test_task_published_by_a_process_without_the_recorder(worker, redis_client):
    import subprocess
    import sys

    from django.conf import settings

    code = (
        "import sys; from celery import Celery; "
        "app = Celery('plain', broker=sys.argv[1]); "
        "print(app.send_task('workers.tasks.send_invoice', args=[4321], queue='default').id)"
    )
    task_id = subprocess.run(
        [sys.executable, "-c", code, settings.REDIS_URL], capture_output=True, text=True, check=True
    ).stdout.strip()
    row = wait_until(redis_client, finished(task_id), what="row of a plainly published task")
    assert (row.state, row.name, row.queue, row.input_id) == (
        "SUCCESS",
        "workers.tasks.send_invoice",
        "default",
        "4321",
    )
    assert row.args == "[4321]" and row.published_at is None

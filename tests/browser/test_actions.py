"""Operator actions in the browser: an operator retries a failed task; a viewer cannot."""

from __future__ import annotations

import time

import pytest
from django.conf import settings

from dashboard.ingest.monitor import Monitor
from dashboard.ingest.stream import StreamConsumer
from dashboard.ingest.writer import write_events
from dashboard.models import OperatorAction, TaskRun
from tasktrail import recorder
from tests.browser.conftest import NO_PLAYWRIGHT, log_in, user_in
from tests.catalog import register_demo_tasks
from tests.conftest import event, new_task_id

expect = pytest.importorskip("playwright.sync_api", reason=NO_PLAYWRIGHT).expect
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


@pytest.fixture(autouse=True)
def _shop_catalog() -> None:
    """Retry decides from the shop's task catalog: the demo's tasks, as its worker reports them."""
    register_demo_tasks()


def record_failed_invoice() -> str:
    task_id = new_task_id()
    t0 = time.time() - 60
    write_events(
        [
            event("published", task_id, t0, name="workers.tasks.send_invoice", queue="default",
                  input_id="10237", args="[10237]", kwargs="{}", published_at=t0),
            event("failed", task_id, t0 + 1, exc_type="ValueError", exc_message="VAT missing"),
        ]
    )  # fmt: skip
    return task_id


def test_operator_retries_a_failed_task_and_sees_the_new_one(page, redis_client):
    old = record_failed_invoice()
    log_in(page, user_in("operator"), f"/tasks/{old}/")
    page.get_by_text("Retry…").click()
    page.get_by_label("Reason (kept in the audit log)").fill("VAT number added to the template")
    page.get_by_role("button", name="Retry task").click()
    expect(page.locator("#task-actions")).to_contain_text("Retrying 1 task")
    new_id = TaskRun.objects.get(task_id=old).retried_as
    assert new_id
    expect(page.get_by_role("link", name=new_id)).to_be_visible()
    expect(page.get_by_text("Retry…")).to_have_count(0)  # retried once: no second button

    # the retry was published with the recorder: let the monitor write its row, then follow it
    recorder.flush()
    Monitor(StreamConsumer(redis_client, settings.TASKTRAIL_STREAM, consumer="b")).run(drain=True)
    page.get_by_role("link", name=new_id).click()
    expect(page.locator("#story")).to_contain_text("This is a retry of")
    expect(page.locator("#story")).to_contain_text("10237")
    assert OperatorAction.objects.get().reason == "VAT number added to the template"


def test_viewer_sees_no_buttons_and_a_forged_post_is_refused(page, redis_client):
    old = record_failed_invoice()
    log_in(page, user_in("viewer"), f"/tasks/{old}/")
    expect(page.locator("#story")).to_contain_text("VAT missing")
    expect(page.get_by_text("Retry…")).to_have_count(0)
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    response = page.request.post(
        f"/tasks/{old}/retry",
        form={"reason": "forged"},
        headers={"X-CSRFToken": token, "Referer": page.url},
    )
    assert response.status == 403
    assert TaskRun.objects.get(task_id=old).retried_as is None
    assert redis_client.llen("default") == 0
    assert OperatorAction.objects.get().outcome == "refused"

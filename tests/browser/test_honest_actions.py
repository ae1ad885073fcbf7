"""An operator on the task page: actions near the top, offered only where they can succeed, and a
refusal's message shown where the operator acted (htmx), kept in the history after a reload."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth.models import Group, User

from dashboard.ingest.writer import write_events
from tests.browser.conftest import NO_PLAYWRIGHT, PageWatch, log_in, user_in
from tests.catalog import register_demo_tasks
from tests.conftest import event, new_task_id

expect = pytest.importorskip("playwright.sync_api", reason=NO_PLAYWRIGHT).expect
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


@pytest.fixture(autouse=True)
def _shop_catalog() -> None:
    """Retry decides from the shop's task catalog: the demo's tasks, as its worker reports them."""
    register_demo_tasks()


def operator() -> User:
    return user_in("operator")


def record_failed(name: str, input_id: str) -> str:
    task_id = new_task_id()
    t0 = time.time() - 60
    write_events(
        [
            event("published", task_id, t0, name=name, queue="default", input_id=input_id,
                  args=f'["{input_id}", 100]', kwargs="{}", published_at=t0),
            event("started", task_id, t0 + 0.5, retries=0, hostname="w1@shop-1"),
            event("failed", task_id, t0 + 1, retries=0, exc_type="ValueError",
                  exc_message="declined"),
        ]
    )  # fmt: skip
    return task_id


def expected_refusal(watch: PageWatch, status: int) -> None:
    """The refusal's HTTP status is the point of the test, not a fault of the page."""
    watch.failed_responses[:] = [
        r for r in watch.failed_responses if not r.startswith(f"{status} ")
    ]
    watch.console_errors[:] = [m for m in watch.console_errors if f"status of {status}" not in m]


def test_operator_refused_for_a_blank_reason_sees_why_in_place(page, watch, redis_client):
    task_id = record_failed("workers.tasks.send_invoice", "20417")
    log_in(page, operator(), f"/tasks/{task_id}/")
    page.get_by_text("Retry…").click()
    page.get_by_label("Reason (kept in the audit log)").fill("   ")  # passes `required`
    page.get_by_role("button", name="Retry task").click()
    expect(page.locator("#task-actions")).to_contain_text(
        "Say why: a reason is required for every action."
    )
    expected_refusal(watch, 422)


def test_operator_made_a_viewer_sees_the_refusal_in_place_and_after_reload(
    page, watch, redis_client
):
    task_id = record_failed("workers.tasks.send_invoice", "20418")
    user = operator()
    log_in(page, user, f"/tasks/{task_id}/")
    page.get_by_text("Retry…").click()
    page.get_by_label("Reason (kept in the audit log)").fill("customer asked again")
    # an admin makes the operator a viewer while the form is open
    user.groups.set([Group.objects.get(name="viewer")])
    page.get_by_role("button", name="Retry task").click()
    expect(page.locator("#task-actions")).to_contain_text(
        f"{user.get_username()} may not retry tasks."
    )
    page.reload()
    expect(page.locator("#task-actions .history")).to_contain_text("Refused — not permitted")
    expected_refusal(watch, 403)


def test_operator_sees_why_an_opt_out_task_offers_no_retry(page, redis_client):
    task_id = record_failed("workers.tasks.charge_card", "PAY-20419")
    log_in(page, operator(), f"/tasks/{task_id}/")
    expect(page.locator("#task-actions")).to_contain_text(
        "Retry is not available: workers.tasks.charge_card opts out of operator retries"
    )
    expect(page.get_by_text("Retry…")).to_have_count(0)


def test_actions_are_above_the_timeline(page, redis_client):
    task_id = record_failed("workers.tasks.send_invoice", "20420")
    log_in(page, operator(), f"/tasks/{task_id}/")
    actions = page.locator("#task-actions").bounding_box()
    timeline = page.get_by_role("heading", name="Timeline").bounding_box()
    assert actions is not None and timeline is not None
    assert actions["y"] < timeline["y"]

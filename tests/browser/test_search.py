"""Support staff paste what they have (a ticket's "order 19817", "#19817", the task id a log line
shortened) and land on the task; the Task name filter takes the short name."""

from __future__ import annotations

import re
import time
import uuid

import pytest

from dashboard.ingest.writer import write_events
from tests.browser.conftest import NO_PLAYWRIGHT
from tests.conftest import event

expect = pytest.importorskip("playwright.sync_api", reason=NO_PLAYWRIGHT).expect
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def record_invoice(*, input_id: str, name: str = "workers.tasks.send_invoice") -> str:
    """A finished task with a Celery-style (uuid) task id; returns the id."""
    task_id = str(uuid.uuid4())
    t0 = time.time() - 60
    write_events(
        [
            event("published", task_id, t0, name=name, queue="default", input_id=input_id,
                  args=f'["{input_id}"]', kwargs="{}", retries=0, published_at=t0),
            event("started", task_id, t0 + 0.2, retries=0, hostname="w1@shop-1", pid=41),
            event("succeeded", task_id, t0 + 1, retries=0, hostname="w1@shop-1", pid=41,
                  runtime=0.8),
        ]
    )  # fmt: skip
    return task_id


def search_from_the_header(page, text: str) -> None:
    search = page.get_by_role("searchbox", name="Search by input id, task id or trace id")
    search.fill(text)
    with page.expect_navigation():
        search.press("Enter")


@pytest.fixture
def invoices() -> dict[str, str]:
    return {
        "19817": record_invoice(input_id="19817"),
        "29817": record_invoice(input_id="29817"),
        "sku": record_invoice(input_id="SKU-3141", name="workers.tasks.sync_inventory"),
    }


@pytest.mark.parametrize("pasted", ["order 19817", "#19817", "Order #19817"])
def test_pasted_order_number_opens_the_task(page, logged_in, invoices, pasted):
    logged_in("/")
    search_from_the_header(page, pasted)
    expect(page).to_have_url(re.compile(rf"/tasks/{invoices['19817']}/$"))
    expect(page.locator(".task-head h1")).to_contain_text("send_invoice")


def test_first_8_characters_of_a_task_id_open_the_task(page, logged_in, invoices):
    logged_in("/")
    search_from_the_header(page, invoices["sku"][:8])
    expect(page).to_have_url(re.compile(rf"/tasks/{invoices['sku']}/$"))
    expect(page.locator(".task-head h1")).to_contain_text("sync_inventory")


def test_a_search_with_nothing_found_says_so_once(page, logged_in, invoices):
    logged_in("/")
    search_from_the_header(page, "order 404")
    expect(page.locator("#results")).to_contain_text("No task matches the search “order 404”.")


def test_part_of_a_task_name_filters_the_list(page, logged_in, invoices):
    logged_in("/tasks/")
    page.get_by_label("Task name").fill("send_invoice")
    with page.expect_navigation():
        page.get_by_role("button", name="Apply").click()
    rows = page.locator("#task-rows tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#task-rows")).to_contain_text("19817")
    expect(page.locator("#task-rows")).to_contain_text("29817")
    expect(page.locator("#task-rows")).not_to_contain_text("SKU-3141")


def test_task_name_field_suggests_the_recorded_names(page, logged_in, invoices):
    logged_in("/tasks/")
    options = page.locator("#f-name-known option")
    expect(options).to_have_count(2)
    assert options.evaluate_all("os => os.map(o => o.value)") == [
        "workers.tasks.send_invoice",
        "workers.tasks.sync_inventory",
    ]
    assert page.get_by_label("Task name").get_attribute("list") == "f-name-known"


def test_states_are_picked_with_plain_clicks(page, logged_in, invoices):
    logged_in("/tasks/")
    page.locator(".state-pick summary").click()
    failed = page.get_by_role("checkbox", name="Failed")
    lost = page.get_by_role("checkbox", name="Lost (worker gone)")
    expect(lost).to_be_visible()  # the last state is not cut off
    failed.check()
    lost.check()
    with page.expect_navigation():
        page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"[?&]state=FAILURE&state=LOST(&|$)"))
    expect(page.locator(".state-pick summary")).to_have_text("FAILURE, LOST")
    expect(page.locator("#results")).to_contain_text("No task matches state FAILURE or LOST")

"""Pages follow the database without a reload: new rows in the list, a task finishing."""

from __future__ import annotations

import re
import time

import pytest

from dashboard.ingest.writer import write_events
from tests.browser.conftest import NO_PLAYWRIGHT, WAIT_MS, record_success
from tests.conftest import event, new_task_id

expect = pytest.importorskip("playwright.sync_api", reason=NO_PLAYWRIGHT).expect
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

MARKER = "window.__tasktrailNoReload"


def mark_page(page) -> None:
    """Set a JS variable that a navigation or reload would lose."""
    page.evaluate(f"{MARKER} = 'still here'")


def assert_not_reloaded(page, navigations: list[str]) -> None:
    assert page.evaluate(MARKER) == "still here", "the page was reloaded"
    assert navigations == [], f"the page navigated: {navigations}"


def track_navigations(page) -> list[str]:
    navigations: list[str] = []
    page.on(
        "framenavigated",
        lambda frame: navigations.append(frame.url) if frame == page.main_frame else None,
    )
    return navigations


def test_a_new_task_appears_in_the_list_without_a_reload(page, logged_in):
    now = time.time()
    record_success(name="shop.send_invoice", input_id="10234", t0=now - 120)
    record_success(name="shop.sync_inventory", input_id="SKU-3141", queue="inventory", t0=now - 60)
    logged_in("/tasks/")
    expect(page.locator("#task-rows tr")).to_have_count(2)
    mark_page(page)
    navigations = track_navigations(page)

    record_success(name="shop.book_shipment", input_id="SHP-2041")  # committed: the server sees it

    rows = page.locator("#task-rows tr")
    expect(rows.first).to_contain_text("SHP-2041", timeout=WAIT_MS)
    expect(rows).to_have_count(3)
    expect(rows.first.locator(".badge")).to_have_text(re.compile(r"SUCCESS"))
    assert_not_reloaded(page, navigations)

    # the poller moved on: a second new task arrives once, above the first, with no duplicates
    record_success(name="shop.notify_customer", input_id="CUST-88")
    expect(rows.first).to_contain_text("CUST-88", timeout=WAIT_MS)
    page.wait_for_timeout(3_500)  # one more poll interval: nothing arrives twice
    expect(rows).to_have_count(4)
    ids = rows.evaluate_all("rows => rows.map(r => r.id)")
    assert len(set(ids)) == 4, ids
    assert_not_reloaded(page, navigations)


def test_the_first_task_appears_on_an_empty_list_without_a_reload(page, logged_in):
    logged_in("/tasks/")
    results = page.locator("#results")
    expect(results).to_contain_text("No tasks recorded yet.")
    mark_page(page)
    navigations = track_navigations(page)
    # Tag the empty state drawn with the page: a poll that swaps in a fresh one removes the tag.
    page.evaluate("document.querySelector('#results').firstElementChild.dataset.drawn = 'page'")
    expect(results.locator("[data-drawn='page']")).to_have_count(0, timeout=WAIT_MS)
    expect(results).to_contain_text("No tasks recorded yet.")  # the poll redrew the empty state

    record_success(name="shop.book_shipment", input_id="SHP-1001")

    expect(page.locator("#task-rows tr").first).to_contain_text("SHP-1001", timeout=WAIT_MS)
    assert_not_reloaded(page, navigations)


def set_visibility(page, state: str) -> None:
    """What the browser does when the tab is hidden or shown again."""
    page.evaluate(
        """state => {
            Object.defineProperty(document, "visibilityState", {value: state, configurable: true});
            const hidden = state !== "visible";
            Object.defineProperty(document, "hidden", {value: hidden, configurable: true});
            document.dispatchEvent(new Event("visibilitychange"));
        }""",
        state,
    )


def test_a_hidden_tab_stops_polling_and_refreshes_when_shown(page, logged_in):
    logged_in("/tasks/")
    expect(page.locator("#results")).to_contain_text("No tasks recorded yet.")
    polls: list[float] = []
    page.on(
        "request",
        lambda r: polls.append(time.monotonic()) if r.headers.get("hx-request") else None,
    )
    page.wait_for_timeout(3_500)  # the list polls every 3 s while visible
    assert polls, "no poll while the tab was visible"

    set_visibility(page, "hidden")
    hidden_at = time.monotonic()
    record_success(name="shop.book_shipment", input_id="SHP-HIDDEN")
    page.wait_for_timeout(7_000)  # two poll intervals
    assert [t for t in polls if t > hidden_at] == [], "a hidden tab kept polling"
    assert page.locator("#task-rows tr").count() == 0

    with page.expect_request(lambda r: r.headers.get("hx-request") == "true", timeout=1_500):
        set_visibility(page, "visible")  # refreshes at once, not at the next tick
    expect(page.locator("#task-rows tr").first).to_contain_text("SHP-HIDDEN")


def test_the_detail_of_a_running_task_updates_when_it_finishes(page, logged_in):
    task_id = new_task_id()
    t0 = time.time() - 5
    write_events(
        [
            event("published", task_id, t0, name="shop.build_report", queue="default",
                  input_id="RPT-2025-06", retries=0, published_at=t0),
            event("started", task_id, t0 + 1, retries=0, hostname="w1@shop-1", pid=77),
        ]
    )  # fmt: skip
    path = f"/tasks/{task_id}/"
    logged_in(path)
    badge = page.locator(".task-head h1 .badge")
    expect(badge).to_have_text(re.compile(r"STARTED"))
    expect(page.locator("ol.attempts > li h3 .badge")).to_have_text(re.compile(r"STARTED"))
    mark_page(page)
    navigations = track_navigations(page)
    polls: list[float] = []
    page.on(
        "request",
        lambda request: polls.append(time.monotonic()) if request.url.endswith(path) else None,
    )

    write_events(
        [event("succeeded", task_id, time.time(), retries=0, hostname="w1@shop-1", pid=77,
               runtime=4.0)]
    )  # fmt: skip

    expect(badge).to_have_text(re.compile(r"SUCCESS"), timeout=WAIT_MS)
    expect(page.locator("ol.attempts > li h3 .badge")).to_have_text(re.compile(r"SUCCESS"))
    expect(page.locator(".task-head .facts > div", has_text="Runtime").locator("dd")).to_have_text(
        "4.0 s"
    )
    assert_not_reloaded(page, navigations)

    # finished: the server answered 286 and htmx stopped polling (polls are 2 s apart)
    finished_at = time.monotonic()
    page.wait_for_timeout(4_500)
    late = [t for t in polls if t > finished_at]
    assert late == [], f"{len(late)} polls after the task finished"

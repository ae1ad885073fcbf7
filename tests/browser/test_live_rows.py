"""A support person in New York watches the Tasks list: rows follow their tasks, a task shows up
once it has its name, times read in their zone with the zone named, and "ago" keeps counting."""

from __future__ import annotations

import datetime as dt
import re
import time
import zoneinfo
from collections.abc import Iterator
from typing import Any

import pytest

from dashboard.ingest.writer import write_events
from tests.browser.conftest import NO_PLAYWRIGHT, WAIT_MS, PageWatch, record_success
from tests.browser.test_live_updates import assert_not_reloaded, mark_page, track_navigations
from tests.conftest import event, new_task_id

expect = pytest.importorskip("playwright.sync_api", reason=NO_PLAYWRIGHT).expect
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

ZONE = "America/New_York"


@pytest.fixture
def page(browser: Any, live_server: Any, watch: PageWatch) -> Iterator[Any]:
    """The conftest page, in a browser whose clock reads New York time."""
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": 1280, "height": 800}, timezone_id=ZONE
    )
    context.set_default_timeout(WAIT_MS)
    tab = context.new_page()
    tab.on("console", lambda m: watch.console_errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda error: watch.page_errors.append(str(error)))
    tab.on("response", lambda r: watch.failed_responses.append(r.url) if r.status >= 400 else None)
    yield tab
    context.close()
    watch.assert_clean()


def started(task_id: str, t0: float, input_id: str) -> None:
    write_events(
        [
            event("published", task_id, t0, name="workers.tasks.send_invoice", queue="default",
                  input_id=input_id, retries=0, published_at=t0),
            event("started", task_id, t0 + 1, retries=0, hostname="w1@shop-1", pid=41),
        ]
    )  # fmt: skip


def next_poll(page: Any) -> Any:
    """Waits for the list's next poll to be answered."""
    return page.expect_response(lambda r: "/tasks/live/" in r.url, timeout=WAIT_MS)


def test_live_list_updates_a_row_from_started_to_success(page, logged_in):
    task_id = new_task_id()
    started(task_id, time.time() - 10, "19817")
    logged_in("/tasks/")
    badge = page.locator("#task-rows tr", has_text="19817").locator(".badge")
    expect(badge).to_have_text(re.compile("STARTED"))
    mark_page(page)
    navigations = track_navigations(page)

    write_events([event("succeeded", task_id, time.time(), retries=0, hostname="w1@shop-1",
                        pid=41, runtime=9.0)])  # fmt: skip

    expect(badge).to_have_text(re.compile("SUCCESS"), timeout=WAIT_MS)
    expect(page.locator("#task-rows tr", has_text="19817")).to_contain_text("9.0 s")
    expect(page.locator("#task-rows tr")).to_have_count(1)
    assert_not_reloaded(page, navigations)


def test_a_task_seen_by_its_worker_first_appears_once_it_has_its_name(page, logged_in):
    record_success(name="workers.tasks.send_invoice", input_id="10234", t0=time.time() - 60)
    logged_in("/tasks/")
    rows = page.locator("#task-rows tr")
    expect(rows).to_have_count(1)

    task_id, t0 = new_task_id(), time.time()
    write_events([event("started", task_id, t0, retries=0, hostname="w1@shop-1", pid=7)])
    for _ in range(2):  # two polls answered after the worker's event: the nameless row waits
        with next_poll(page):
            pass
    expect(rows).to_have_count(1)
    expect(page.locator("#task-rows")).not_to_contain_text("(unknown task)")

    write_events([event("published", task_id, t0 - 0.5, name="workers.tasks.book_shipment",
                        queue="shipping", input_id="SHP-2041", published_at=t0 - 0.5)])  # fmt: skip

    expect(rows).to_have_count(2, timeout=WAIT_MS)
    expect(rows.first).to_contain_text("book_shipment")
    expect(rows.first).to_contain_text("SHP-2041")
    expect(rows.first).to_contain_text("shipping")


def test_times_read_in_the_browser_zone_with_the_zone_named(page, logged_in):
    t0 = time.time() - 3 * 3600
    record_success(name="workers.tasks.send_invoice", input_id="19817", t0=t0)
    logged_in("/tasks/")
    local = dt.datetime.fromtimestamp(t0, zoneinfo.ZoneInfo(ZONE))
    published = page.locator("#task-rows tr").first.locator("td time.when").first
    expect(published).to_contain_text(f"{local:%H:%M:%S}")
    expect(published.locator(".ago")).to_have_text("3h ago")
    # the list names the zone once, in the column header (EDT or EST)
    header = page.locator("table.grid.tasks thead th", has_text="Published")
    expect(header.locator(".zone")).to_have_text(f"{dt.datetime.now(zoneinfo.ZoneInfo(ZONE)):%Z}")
    # the task page names it beside each time
    published.locator("xpath=ancestor::tr").get_by_role("link", name="send_invoice").click()
    expect(page.locator(".task-head time.when").first).to_contain_text(f"{local:%H:%M:%S %Z}")


def test_relative_times_advance_without_a_reload(page, logged_in):
    record_success(name="workers.tasks.send_invoice", input_id="19817", t0=time.time() - 2)
    logged_in("/tasks/")
    ago = page.locator("#task-rows tr").first.locator("td time.when .ago").first
    expect(ago).to_have_text(re.compile(r"^\d+s ago$"))
    first = ago.text_content()
    mark_page(page)
    navigations = track_navigations(page)
    expect(ago).not_to_have_text(first, timeout=WAIT_MS)
    expect(ago).to_have_text(re.compile(r"^\d+s ago$"))
    assert_not_reloaded(page, navigations)


def test_task_names_show_without_their_module_path(page, logged_in):
    record_success(name="workers.tasks.send_invoice", input_id="19817")
    logged_in("/tasks/")
    link = page.locator("#task-rows tr").first.get_by_role("link", name="send_invoice")
    expect(link).to_have_text("send_invoice")
    expect(link).to_have_attribute("title", "workers.tasks.send_invoice")

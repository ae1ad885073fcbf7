"""The Workers page in a real browser: it follows the workers' rows without a reload, and a huge
hostname or queue name from a heartbeat does not widen the page."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from dashboard.models import Worker
from tests.browser.conftest import NO_PLAYWRIGHT, WAIT_MS
from tests.worker_rows import make_worker

expect = pytest.importorskip("playwright.sync_api", reason=NO_PLAYWRIGHT).expect
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

OVERFLOW_JS = "document.documentElement.scrollWidth - document.documentElement.clientWidth"


def test_the_page_follows_workers_arriving_and_going_without_a_reload(page, logged_in):
    logged_in("/workers/")
    panel = page.locator("#workers-panel")
    expect(panel).to_contain_text("No worker has sent a heartbeat yet")
    page.evaluate("window.__tasktrailNoReload = 'still here'")

    make_worker("w1@shop-1", release="2026.12.1")  # committed: the next poll sees it

    online = page.locator("section[aria-labelledby='workers-online'] tbody tr")
    expect(online).to_have_count(1, timeout=WAIT_MS)
    expect(online.first).to_contain_text("w1@shop-1")
    expect(online.first).to_contain_text("2026.12.1")

    make_worker("w2@shop-2", release="2026.11.30")
    expect(page.locator(".release-mix")).to_contain_text("release 2026.11.30: w2@shop-2")
    now = timezone.now()
    Worker.objects.filter(hostname="w2@shop-2").update(
        status="gone", gone_at=now, last_heartbeat_at=now - dt.timedelta(seconds=40)
    )
    gone = page.locator("section[aria-labelledby='workers-gone'] tbody tr")
    expect(gone).to_have_count(1, timeout=WAIT_MS)
    expect(gone.first).to_contain_text("w2@shop-2")
    expect(page.locator(".release-mix")).to_have_count(0)  # only live workers count
    assert page.evaluate("window.__tasktrailNoReload") == "still here", "the page was reloaded"


def test_a_huge_hostname_and_queue_name_keep_the_page_within_a_1366_pixel_laptop(page, logged_in):
    page.set_viewport_size({"width": 1366, "height": 800})
    make_worker(
        "h" * 239 + "@shop-1.internal",  # 255 characters: the longest hostname the row stores
        queues=["q" * 600, "default"],
        release="r" * 255,
        running=["t" * 255],
        running_count=1,
    )
    logged_in("/workers/")
    row = page.locator("section[aria-labelledby='workers-online'] tbody tr")
    expect(row).to_have_count(1)
    assert page.evaluate(OVERFLOW_JS) == 0, "the page scrolls sideways"
    table = page.locator("table.grid.workers").bounding_box()
    assert table is not None and table["x"] + table["width"] <= 1366
    box = row.bounding_box()
    assert box is not None and box["height"] < 400, f"the row is {box} tall"

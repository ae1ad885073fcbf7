"""Log in, search by input id from the header, open the task, read its attempts and error."""

from __future__ import annotations

import re
import time

import pytest

from dashboard.ingest.writer import write_events
from tests.browser.conftest import NO_PLAYWRIGHT, log_in, record_success
from tests.conftest import event, new_task_id

expect = pytest.importorskip("playwright.sync_api", reason=NO_PLAYWRIGHT).expect
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

HOSTILE = "<img src=x onerror=alert(1)>"


def record_failed_charge(input_id: str) -> str:
    """shop.charge_card: declined once, retried, then failed with a hostile message."""
    task_id = new_task_id()
    t0 = time.time() - 120
    write_events(
        [
            event("published", task_id, t0, name="shop.charge_card", queue="payments",
                  input_id=input_id, args=f'["{input_id}"]', kwargs='{"card_token": "tok_1"}',
                  arg_names="payment_id", retries=0, published_at=t0),
            event("started", task_id, t0 + 1, retries=0, hostname="w1@shop-1", pid=31),
            event("retried", task_id, t0 + 2, retries=0, hostname="w1@shop-1", pid=31,
                  exc_type="CardDeclined", exc_message="issuer unavailable"),
            event("published", task_id, t0 + 2, name="shop.charge_card", queue="payments",
                  retries=1, published_at=t0 + 2),
            event("started", task_id, t0 + 5, retries=1, hostname="w2@shop-2", pid=44),
            event("failed", task_id, t0 + 6, retries=1, hostname="w2@shop-2", pid=44,
                  exc_type="ValueError", exc_message=HOSTILE,
                  traceback="Traceback (most recent call last):\n  ...\nValueError: " + HOSTILE,
                  runtime=1.0),
        ]
    )  # fmt: skip
    return task_id


def test_login_page_loads_htmx_and_the_stylesheet(page, watch, live_server):
    """Static files come from the live server: htmx (django-htmx) and static/css/tasktrail.css."""
    statics: dict[str, int] = {}
    page.on(
        "response",
        lambda r: statics.__setitem__(r.url, r.status) if "/static/" in r.url else None,
    )
    page.goto("/tasks/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/tasks/$"))
    assert page.evaluate("typeof window.htmx") == "object", "htmx did not load"
    assert page.evaluate("window.htmx.version").startswith("2.")
    css = [url for url in statics if url.endswith("/static/css/tasktrail.css")]
    js = [url for url in statics if "/static/django_htmx/htmx" in url]
    assert css and js, statics
    assert {statics[url] for url in css + js} == {200}
    # the stylesheet applies, not just downloads: .login is a centred 22rem column
    width = page.evaluate("getComputedStyle(document.querySelector('.login')).maxWidth")
    assert width == "308px", width  # 22rem at the stylesheet's 14px root font size


def test_search_from_the_header_then_open_the_failed_task(page, watch, viewer):
    record_success(name="shop.send_invoice", input_id="10234", t0=time.time() - 300)
    record_success(name="shop.sync_inventory", input_id="SKU-3141", queue="inventory")
    task_id = record_failed_charge("PAY-7782X")
    record_success(name="shop.charge_card", input_id="PAY-7782Y", t0=time.time() - 600)
    record_success(name="shop.notify_customer", input_id="CUST-88")

    log_in(page, viewer, "/")
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()

    search = page.get_by_role("searchbox", name="Search by input id, task id or trace id")
    search.fill("PAY-7782")  # the beginning of an input id matches
    with page.expect_navigation():
        search.press("Enter")
    expect(page).to_have_url(re.compile(r"/tasks/\?q=PAY-7782$"))

    rows = page.locator("#task-rows tr")
    expect(rows).to_have_count(2)  # two matches: the list (a single match opens the task)
    row = rows.first
    expect(row).to_contain_text("PAY-7782X")
    expect(row.locator(".badge")).to_have_text(re.compile(r"FAILURE"))
    # the hostile message is text in the row, clipped, never markup
    expect(row.locator("td.error-text")).to_have_text("ValueError: " + HOSTILE)
    assert row.locator("img").count() == 0
    expect(page.locator("#task-rows")).not_to_contain_text("SKU-3141")

    link = row.get_by_role("link", name="charge_card", exact=True)  # every name is under shop.
    expect(link).to_have_attribute("title", "shop.charge_card")
    with page.expect_navigation():
        link.click()
    expect(page).to_have_url(re.compile(rf"/tasks/{re.escape(task_id)}/$"))
    expect(page.locator(".task-head h1")).to_contain_text("shop.charge_card")
    expect(page.locator(".task-head h1 .badge")).to_have_text(re.compile(r"FAILURE"))

    error_box = page.locator("section.error-box")
    expect(error_box.locator(".error-text")).to_have_text(HOSTILE)

    attempts = page.locator("ol.attempts > li")
    expect(attempts).to_have_count(2)
    expect(attempts.nth(0).locator("h3")).to_contain_text("Attempt 1")
    expect(attempts.nth(0).locator("h3 .badge")).to_have_text(re.compile(r"RETRY"))
    expect(attempts.nth(0)).to_contain_text("CardDeclined: issuer unavailable")
    expect(attempts.nth(1).locator("h3")).to_contain_text("Attempt 2")
    expect(attempts.nth(1).locator("h3 .badge")).to_have_text(re.compile(r"FAILURE"))
    expect(attempts.nth(1).locator("p.error-text")).to_have_text("ValueError: " + HOSTILE)
    expect(attempts.nth(1)).to_contain_text("w2@shop-2 (pid 44)")

    traceback = attempts.nth(1).locator("details")
    traceback.locator("summary").click()
    expect(traceback.locator("pre.traceback")).to_contain_text("ValueError: " + HOSTILE)

    # the redacted keyword argument is masked in the page
    expect(page.locator("section", has=page.locator("#args-h"))).not_to_contain_text("tok_1")

    # no element from the message exists anywhere, and nothing tried to open a dialog
    assert page.locator("main img").count() == 0
    page.wait_for_timeout(300)  # an onerror handler would fire right after the image fails
    assert watch.dialogs == []


def test_pages_declare_an_icon_or_serve_favicon_ico(page, live_server):
    """Chromium otherwise logs a 404 console error for /favicon.ico (once per browser, so this
    checks the cause rather than waiting for that message)."""
    page.goto("/accounts/login/")
    declared = page.locator("link[rel~='icon']").count() > 0
    served = page.request.get("/favicon.ico").ok
    assert declared or served, "no <link rel=icon> and /favicon.ico is not found"

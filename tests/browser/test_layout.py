"""How the pages fit and read: a phone-width header, the system's dark scheme, form contrast."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dashboard.ingest.writer import write_events
from tests.browser.conftest import NO_PLAYWRIGHT, WAIT_MS, log_in, record_success, user_in
from tests.conftest import event, new_task_id

pytest.importorskip("playwright.sync_api", reason=NO_PLAYWRIGHT)
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

# WCAG 2.1 relative luminance and contrast ratio, computed in the page from computed colours.
CONTRAST_JS = """([selector, property]) => {
  const rgb = (text) => text.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = ([r, g, b]) => {
    const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const el = document.querySelector(selector);
  const fg = lum(rgb(getComputedStyle(el)[property]));
  const bg = lum(rgb(getComputedStyle(document.body).backgroundColor === "rgba(0, 0, 0, 0)"
    ? getComputedStyle(document.documentElement).backgroundColor
    : getComputedStyle(document.body).backgroundColor));
  return (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
}"""
BACKGROUND_JS = "getComputedStyle(document.documentElement).backgroundColor"
OVERFLOW_JS = "document.documentElement.scrollWidth - document.documentElement.clientWidth"


@pytest.fixture
def open_page(browser: Any, live_server: Any, viewer: Any) -> Iterator[Callable[..., Any]]:
    """``open_page(path, width=…, scheme=…)``: a logged-in tab in a context of that size and
    colour scheme."""
    contexts: list[Any] = []

    def go(path: str, *, width: int = 1280, scheme: str = "light", user: Any = None) -> Any:
        context = browser.new_context(
            base_url=live_server.url, viewport={"width": width, "height": 800}, color_scheme=scheme
        )
        context.set_default_timeout(WAIT_MS)
        contexts.append(context)
        tab = context.new_page()
        log_in(tab, user or viewer, path)
        return tab

    yield go
    for context in contexts:
        context.close()


@pytest.mark.parametrize("path", ["/", "/tasks/", "/queues/", "/workers/"])
def test_a_phone_width_page_does_not_scroll_sideways(open_page, path):
    record_success(name="shop.book_shipment", input_id="SHP-390")
    tab = open_page(path, width=390)
    assert tab.locator("nav[aria-label='Main'] a").last.is_visible()
    header_overflow = tab.evaluate(
        "(() => { const h = document.querySelector('header.top'); "
        "return h.scrollWidth - h.clientWidth; })()"
    )
    assert header_overflow == 0


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_form_fields_have_three_to_one_contrast(open_page, scheme):
    tab = open_page("/tasks/", scheme=scheme)
    ratio = tab.evaluate(CONTRAST_JS, ["#global-search", "borderTopColor"])
    assert ratio >= 3.0, f"search field border {ratio:.2f}:1 in the {scheme} scheme"


def test_the_dark_scheme_follows_the_system_setting(open_page):
    light = open_page("/tasks/", scheme="light").evaluate(BACKGROUND_JS)
    dark = open_page("/tasks/", scheme="dark").evaluate(BACKGROUND_JS)
    assert light == "rgb(255, 255, 255)"
    assert dark == "rgb(20, 23, 28)"
    text = open_page("/tasks/", scheme="dark").evaluate(CONTRAST_JS, ["main", "color"])
    assert text >= 7.0, f"body text {text:.2f}:1 on the dark background"


def test_workflow_tree_badges_are_never_clipped(open_page):
    t0 = time.time() - 30
    root, child = new_task_id(), new_task_id()
    long_name = "shop.fulfilment.warehouse.tasks.reserve_stock_for_every_line_of_the_order"
    write_events(
        [
            event("published", root, t0, name=long_name, queue="default", retries=0,
                  published_at=t0, root_id=root),
            event("succeeded", root, t0 + 2, retries=0, hostname="w1@h", pid=1, runtime=1.0),
            event("published", child, t0 + 1, name=long_name + "_child", queue="default",
                  retries=0, published_at=t0 + 1, root_id=root, parent_id=root),
            event("succeeded", child, t0 + 3, retries=0, hostname="w1@h", pid=1, runtime=1.0),
        ]
    )  # fmt: skip
    tab = open_page(f"/tasks/{child}/")
    labels = tab.locator(".tl-tree .tl-label")
    assert labels.count() == 2
    for i in range(2):
        label = labels.nth(i).bounding_box()
        badge = labels.nth(i).locator(".badge").bounding_box()
        assert badge["x"] + badge["width"] <= label["x"] + label["width"] + 0.5
        assert labels.nth(i).locator(".badge").inner_text().strip().endswith("SUCCESS")


def test_the_tasks_table_fits_a_1366_pixel_laptop(open_page):
    now = time.time()
    for i in range(3):
        record_success(
            name="workers.tasks.synchronise_inventory_with_the_warehouse",
            input_id=f"SKU-{1000 + i}-LONG-INPUT-ID-VALUE",
            t0=now - 400 - i,
        )
    operator = user_in("operator")  # with the selection column
    tab = open_page("/tasks/", width=1366, user=operator)
    assert tab.locator("#task-rows td.pick").count() == 3
    assert tab.evaluate(OVERFLOW_JS) == 0, "the page scrolls sideways"
    table = tab.locator("table.grid.tasks").bounding_box()
    assert table["x"] + table["width"] <= 1366

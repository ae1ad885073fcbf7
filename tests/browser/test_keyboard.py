"""Keyboard use: the skip link comes first and works; Tab reaches the navigation and the search."""

from __future__ import annotations

import pytest

from tests.browser.conftest import NO_PLAYWRIGHT

expect = pytest.importorskip("playwright.sync_api", reason=NO_PLAYWRIGHT).expect
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

DESCRIBE_FOCUS = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const label = el.getAttribute("aria-label") || el.id || el.textContent.trim();
  const style = getComputedStyle(el);
  const box = el.getBoundingClientRect();
  return {tag: el.tagName.toLowerCase(), label, inMain: !!el.closest("main"),
          outline: style.outlineStyle, visible: box.width > 0 && box.height > 0
            && box.left >= 0 && box.top >= 0 && box.right <= innerWidth};
}"""


def tab(page):
    page.keyboard.press("Tab")
    return page.evaluate(DESCRIBE_FOCUS)


def test_tab_order_from_the_top_reaches_the_navigation_and_the_search(page, logged_in):
    logged_in("/tasks/")
    page.goto("/tasks/")  # a fresh load: keyboard focus starts at the top of the document

    expected = [
        "Skip to content",
        "tasktrail",
        "Overview",
        "Tasks",
        "Statistics",
        "Workers",
        "Queues",
        "Incidents",
        "Audit",
        "global-search",
        "Search",
        "Preferences",
        "Log out",
    ]
    stops = [tab(page) for _ in expected]
    labels = [s["label"] if s else None for s in stops]
    assert labels == expected, labels
    for stop in stops:
        assert stop["visible"], f"focused but not visible: {stop}"
        assert stop["outline"] != "none", f"no visible focus indicator: {stop}"


def test_the_skip_link_moves_past_the_header(page, logged_in):
    logged_in("/tasks/")
    page.goto("/tasks/")
    first = tab(page)
    assert first["label"] == "Skip to content", first
    assert first["visible"], "the skip link stays off-screen when focused"
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()

    page.keyboard.press("Enter")
    assert page.url.endswith("#main")
    after = tab(page)
    # the next Tab lands in the content (the filter form), not back in the header
    assert after is not None and after["inMain"], after
    expect(page.locator("#f-q")).to_be_focused()

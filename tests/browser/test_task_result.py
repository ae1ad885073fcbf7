"""The task page in Chromium: the result section arrives after the page, read by htmx from a real
Redis result backend; an unreachable backend is a message in that section."""

from __future__ import annotations

import time
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import log_in, record_success
from tests.dashboard.selectors.test_results import result_redis, results_url, shop_app  # noqa: F401


def result_section(page: Any) -> Any:
    return page.locator("section", has=page.locator("#res-h"))


def test_the_result_loads_after_the_page_with_secrets_masked(page, viewer, result_redis):  # noqa: F811
    task_id = record_success(name="shop.send_invoice", input_id="10234", t0=time.time() - 60)
    value = {"invoice": "INV-10234", "api_token": "tok_live_999"}
    shop_app().backend.store_result(task_id, value, "SUCCESS")
    log_in(page, viewer, f"/tasks/{task_id}/")
    section = result_section(page)
    expect(section.locator("pre")).to_contain_text('"invoice": "INV-10234"')
    expect(section).not_to_contain_text("tok_live_999")
    expect(section).to_contain_text(f"Read from {results_url()}")
    expect(section).not_to_contain_text("Reading the result")


def test_an_unreachable_backend_is_a_message_in_the_section(page, viewer, settings):
    settings.TASKTRAIL_RESULT_BACKEND = "redis://:s3cret-pw@127.0.0.1:1/0"
    task_id = record_success(name="shop.send_invoice", input_id="10235")
    log_in(page, viewer, f"/tasks/{task_id}/")
    section = result_section(page)
    expect(section.locator(".error-text")).to_contain_text("result backend unreachable: ")
    expect(section).not_to_contain_text("s3cret-pw")
    expect(page.locator(".task-head h1")).to_contain_text("shop.send_invoice")

"""A real Chromium (Debian's, not Playwright's download) against pytest-django's live server.

Skipped with the reason when the ``playwright`` package or ``/usr/bin/chromium`` is missing.
Every page a test opens fails the test on a browser console error, an uncaught script error or
a JavaScript dialog (``alert``/``confirm``), so an injected ``alert(1)`` cannot go unnoticed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User

from dashboard.ingest.writer import write_events
from tests.conftest import event, new_task_id

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
# Every wait in the browser is bounded: a broken page fails in seconds, not at the suite timeout.
WAIT_MS = 15_000
PASSWORD = "pw-browser-viewer-123"  # a test-only password for a user made in the test database
NO_PLAYWRIGHT = "browser tests need the playwright package: pip install -e '.[dev]'"


@pytest.fixture(scope="package", autouse=True)
def _async_unsafe_allowed() -> Iterator[None]:
    """Between its sync calls Playwright marks its asyncio loop as running on the main thread, so
    Django refuses ORM calls there (SynchronousOnlyOperation) although nothing runs concurrently.
    Allowed while the browser tests run, and restored afterwards."""
    before = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    yield
    if before is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = before


# One browser for the whole browser package. Package, not session, scope: Playwright's loop stays
# marked as running on the main thread while it is started, which would break the ORM calls of
# every test collected after this package (tests/dashboard, ...) in the same pytest run.
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        pytest.skip(NO_PLAYWRIGHT)
    expect.set_options(timeout=WAIT_MS)
    if not CHROMIUM.exists():
        pytest.skip(
            f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install chromium); "
            "Playwright's own browser download is not used"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@dataclass
class PageWatch:
    """What the browser reported while a test ran."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    failed_responses: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        return (
            [f"console error: {m}" for m in self.console_errors]
            + [f"uncaught script error: {m}" for m in self.page_errors]
            + [f"dialog opened: {m}" for m in self.dialogs]
            + [f"HTTP error: {m}" for m in self.failed_responses]
        )

    def assert_clean(self) -> None:
        problems = self.problems()
        assert not problems, "the browser reported:\n" + "\n".join(problems)


@pytest.fixture
def watch() -> PageWatch:
    return PageWatch()


@pytest.fixture
def page(browser: Any, live_server: Any, watch: PageWatch) -> Iterator[Any]:
    """A fresh browser context (no cookies) on the live server; fails on console errors."""
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(WAIT_MS)
    tab = context.new_page()

    def on_dialog(dialog: Any) -> None:
        watch.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def on_console(message: Any) -> None:
        if message.type == "error":
            watch.console_errors.append(f"{message.text} ({message.location.get('url', '')})")

    def on_response(response: Any) -> None:
        if response.status >= 400:
            watch.failed_responses.append(f"{response.status} {response.url}")

    tab.on("dialog", on_dialog)
    tab.on("console", on_console)
    tab.on("pageerror", lambda error: watch.page_errors.append(str(error)))
    tab.on("response", on_response)
    yield tab
    context.close()  # stops htmx polling before the database is flushed
    watch.assert_clean()


@pytest.fixture
def viewer(transactional_db: Any) -> User:
    """A user with the viewer role: may read task runs and attempts."""
    user = User.objects.create_user("browser-viewer", password=PASSWORD)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_taskrun", "view_taskattempt"])
    )
    return user


def user_in(role: str, name: str | None = None) -> User:
    """A user in one of the role groups (viewer, operator, admin), with the test password."""
    from django.contrib.auth.models import Group

    user = User.objects.create_user(name or f"browser-{role}", password=PASSWORD)
    user.groups.add(Group.objects.get(name=role))
    return user


def log_in(page: Any, user: User, path: str = "/") -> None:
    """Log in through the login form; ``path`` is where the login redirect sends us."""
    page.goto(path)
    page.get_by_label("Username").fill(user.get_username())
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()


@pytest.fixture
def logged_in(page: Any, viewer: User) -> Callable[[str], Any]:
    """``logged_in(path)``: log in via the form and land on ``path``."""

    def go(path: str = "/") -> Any:
        log_in(page, viewer, path)
        assert "/accounts/login/" not in page.url, "login failed"
        return page

    return go


def record_success(
    *, name: str, input_id: str, queue: str = "default", t0: float | None = None, runtime=0.8
) -> str:
    """A finished task, written as the monitor would write it; returns the task id."""
    task_id = new_task_id()
    t0 = time.time() if t0 is None else t0
    write_events(
        [
            event("published", task_id, t0, name=name, queue=queue, input_id=input_id,
                  args=f'["{input_id}"]', kwargs="{}", retries=0, published_at=t0),
            event("received", task_id, t0 + 0.1, name=name, queue=queue, hostname="w1@shop-1",
                  retries=0, published_at=t0),
            event("started", task_id, t0 + 0.2, retries=0, hostname="w1@shop-1", pid=4121,
                  queue_wait=0.2),
            event("succeeded", task_id, t0 + 0.2 + runtime, retries=0, hostname="w1@shop-1",
                  pid=4121, runtime=runtime),
        ]
    )  # fmt: skip
    return task_id

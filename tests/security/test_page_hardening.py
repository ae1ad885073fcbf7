"""Logged-in answers are not cached, a 500 is logged (masked) with DEBUG off, bidirectional
controls in names cannot reorder a prompt or a title, and task ids cannot make links leave the
task pages."""

from __future__ import annotations

import html
import io
import logging
import re
import time
from html.parser import HTMLParser
from urllib.parse import unquote, urljoin, urlsplit

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import path, resolve, reverse
from django.utils import timezone

from dashboard.log_filters import ScrubSecrets
from dashboard.models import RegisteredTask, TaskRun
from tasktrail.events import make_event
from tests.security.conftest import client_for, ingest

pytestmark = pytest.mark.django_db


# -- Cache-Control ----------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["viewer", "token"])
def test_answers_to_a_logged_in_person_are_not_stored(role):
    client = client_for(role)
    url = reverse("api-tasks") if role == "token" else reverse("tasks")
    answer = client.get(url)
    assert answer.status_code == 200
    directives = {d.strip() for d in answer["Cache-Control"].split(",")}
    assert {"no-store", "private"} <= directives


def test_static_files_stay_cacheable_for_a_logged_in_person():
    static = client_for("viewer").get("/static/js/tasktrail.js")
    assert static.status_code == 200
    assert "no-store" not in static.get("Cache-Control", "")


# -- a 500 is logged, masked -------------------------------------------------------------------


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("could not charge: card_token='tok_live_123' via redis://u:hunter2@h/0")


urlpatterns = [path("boom/", boom)]


def test_a_500_reaches_stderr_with_its_traceback_and_no_secret(settings):
    settings.DEBUG = False
    settings.ROOT_URLCONF = __name__
    handlers = [
        h
        for h in logging.getLogger("django.request").handlers
        if any(isinstance(f, ScrubSecrets) for f in h.filters)
    ]
    assert handlers, "django.request has no masked handler"
    stream = io.StringIO()
    previous = handlers[0].setStream(stream)  # type: ignore[attr-defined]
    try:
        answer = Client(raise_request_exception=False).get("/boom/")
    finally:
        handlers[0].setStream(previous)  # type: ignore[attr-defined]
    assert answer.status_code == 500
    logged = stream.getvalue()
    assert "ERROR django.request: Internal Server Error: /boom/" in logged
    assert "Traceback (most recent call last)" in logged and "RuntimeError" in logged
    assert "tok_live_123" not in logged and "hunter2" not in logged


# -- bidirectional controls ---------------------------------------------------------------------

RLO, PDF, LRI = "\u202e", "\u202c", "\u2066"
BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def record(task_id: str, *, name: str, queue: str, worker: str, failed: bool = True) -> None:
    t0 = time.time() - 60
    events = [
        make_event("published", task_id, t0, name=name, queue=queue, retries=0, published_at=t0,
                   args="[1]", kwargs="{}", arg_names="n"),
        make_event("started", task_id, t0 + 1, retries=0, hostname=worker, pid=3),
    ]  # fmt: skip
    if failed:
        events.append(
            make_event(
                "failed",
                task_id,
                t0 + 2,
                retries=0,
                hostname=worker,
                pid=3,
                exc_type="E",
                exc_message="x",
                traceback="t",
            )
        )
    ingest(events)


def stored_with_controls(task_id: str, name: str, queue: str, worker: str) -> None:
    """Rows stored before ingest stripped the controls (or by any other path) still hold them."""
    record(task_id, name="shop.placeholder", queue="q", worker="w")
    TaskRun.objects.filter(task_id=task_id).update(name=name, queue=queue, worker=worker)


def test_bidi_controls_are_shown_as_markers_in_pages_titles_and_prompts(settings):
    name = f"shop.{RLO}dnuf{PDF}er"
    stored_with_controls("bidi-1", name, f"q{LRI}x", f"w{RLO}1")
    # a worker reported the task, so the retry prompt (name and queue) is offered
    RegisteredTask.objects.create(hostname="w1", name=name, last_reported_at=timezone.now())
    operator = client_for("operator")
    pages = {
        "task": operator.get(reverse("task-detail", args=["bidi-1"])).content.decode(),
        "tasks": operator.get(reverse("tasks")).content.decode(),
        "overview": operator.get(reverse("overview")).content.decode(),
        "stats": operator.get(reverse("task-stats")).content.decode(),
    }
    for where, text in pages.items():
        # form values (the name filter's suggestions) and data attributes are not shown: they
        # keep the name as stored, to match it
        shown = re.sub(r' (value|data-[\w-]+)="[^"]*"', "", text)
        found = BIDI.search(html.unescape(shown))
        assert not found, (
            f"a bidi control in {where}: {found.string[found.start() - 99 : found.end()]!r}"
        )
    task_page = pages["task"]
    title = re.search(r"<title>(.*?)</title>", task_page, re.S)
    assert title and "[U+202E]" in title.group(1)
    assert "shop.[U+202E]dnuf[U+202C]er" in task_page
    prompt = re.search(r'<div class="retry-call".*?</p>', task_page, re.S)
    assert prompt and "[U+202E]" in prompt.group(0) and "q[U+2066]x" in prompt.group(0)


# -- task ids in links ------------------------------------------------------------------------

HOSTILE_IDS = ["../queues", "..", ".", "a/../../audit", "x?next=/admin/#frag", "..%2Fretention"]


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if key in ("href", "action", "hx-get", "hx-post") and value:
                self.urls.append(value)


def links(page: str) -> list[str]:
    parser = _Links()
    parser.feed(page)
    return parser.urls


def test_hostile_task_ids_link_to_their_own_pages():
    for i, task_id in enumerate(HOSTILE_IDS):
        record(task_id, name=f"shop.t{i}", queue="q", worker="w")
    client = client_for("operator")
    base = "http://testserver/tasks/"
    page = client.get(reverse("tasks")).content.decode()
    for task_id in HOSTILE_IDS:
        wanted = reverse("task-detail", args=[task_id])
        assert wanted in page, task_id
        # as a browser resolves the link: dot segments removed, then the path decoded once
        target = urlsplit(urljoin(base, wanted))
        assert target.path.startswith("/tasks/") and not target.query and not target.fragment
        match = resolve(unquote(target.path))
        assert match.url_name == "task-detail" and match.kwargs["task_id"] == task_id
        detail = client.get(wanted)
        assert detail.status_code == 200, task_id
        assert html.escape(task_id) in detail.content.decode()
        for url in links(detail.content.decode()):
            resolved = urlsplit(urljoin(f"http://testserver{wanted}", url))
            if task_id in unquote(unquote(resolved.path)) and resolved.path.startswith("/tasks/"):
                assert resolve(unquote(resolved.path)).kwargs.get("task_id") == task_id


@pytest.mark.parametrize(
    "raw", ["/tasks/..%2Fqueues/", "/tasks/..%2F..%2Faudit/", "/tasks/%2E%2E/"]
)
def test_an_encoded_dot_dot_id_is_that_task_or_a_404(raw):
    answer = client_for("viewer").get(raw)
    assert answer.status_code == 404
    assert resolve(unquote(raw)).url_name == "task-detail"
    record("../queues", name="shop.t", queue="q", worker="w")
    found = client_for("viewer").get("/tasks/..%2Fqueues/")
    assert found.status_code == 200 and "../queues" in found.content.decode()

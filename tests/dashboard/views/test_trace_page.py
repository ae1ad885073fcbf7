"""Trace links and the timeline on the pages."""

from __future__ import annotations

from django.urls import reverse

from tests.conftest import event, new_task_id, story_retry_then_fail
from tests.dashboard.views.conftest import record

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
RUN_SPAN = "b7ad6b7169203331"


def traced_task(sampled: bool = True) -> str:
    task_id = new_task_id()
    events = story_retry_then_fail(task_id)
    flags = "01" if sampled else "00"
    events[0]["traceparent"] = f"00-{TRACE}-00f067aa0ba902b7-{flags}"
    events[-1]["span_id"] = RUN_SPAN
    record(events)
    return task_id


LIST = {"HX-Request": "true"}  # the rows: a full page opens a search's single match


def test_links_on_the_row_the_page_and_each_attempt(viewer_client, settings):
    settings.TASKTRAIL_TRACE_VIEWER = "jaeger http://jaeger.example:16686"
    task_id = traced_task()
    rows = viewer_client.get(reverse("tasks"), {"q": TRACE}, headers=LIST).content.decode()
    assert rows.count(f'href="http://jaeger.example:16686/trace/{TRACE}"') == 1
    page = viewer_client.get(reverse("task-detail", args=[task_id])).content.decode()
    assert f'href="http://jaeger.example:16686/trace/{TRACE}"' in page  # the task, attempt 1
    assert f'href="http://jaeger.example:16686/trace/{TRACE}?uiFind={RUN_SPAN}"' in page
    assert RUN_SPAN in page


def test_no_link_when_the_trace_was_not_sampled(viewer_client, settings):
    settings.TASKTRAIL_TRACE_VIEWER = "jaeger http://jaeger.example:16686"
    task_id = traced_task(sampled=False)
    page = viewer_client.get(reverse("task-detail", args=[task_id])).content.decode()
    assert "jaeger.example" not in page
    assert TRACE in page and "not sampled" in page
    rows = viewer_client.get(reverse("tasks"), {"q": TRACE}, headers=LIST).content.decode()
    assert "jaeger.example" not in rows and task_id in rows


def test_timeline_on_the_task_page_and_its_partial(viewer_client):
    parent, child = new_task_id(), new_task_id()
    record(story_retry_then_fail(parent))
    record([event("published", child, 1_750_000_002.0, name="shop.notify", retries=0,
                  published_at=1_750_000_002.0, parent_id=parent, root_id=parent)])  # fmt: skip
    url = reverse("task-detail", args=[parent])
    page = viewer_client.get(url).content.decode()
    assert 'aria-labelledby="tl-h"' in page
    assert page.count('class="tl-bar tl-run"') == 2  # one per attempt
    assert 'class="tl-bar tl-delay"' in page  # attempt 2 waited for its countdown
    assert "Workflow tree" in page and "shop.notify" in page
    partial = viewer_client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert 'aria-labelledby="tl-h"' in partial

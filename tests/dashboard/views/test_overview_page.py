"""The overview page reads names and errors as the task list does."""

from __future__ import annotations

import time

import pytest
from django.conf import settings
from django.urls import reverse

from dashboard.ingest.writer import write_events
from dashboard.selectors.system import monitor_status
from tests.conftest import new_task_id, story_success
from tests.dashboard.selectors.test_overview_figures import rows
from tests.dashboard.test_overview import failed
from tests.overview_figures import measure_overview

pytestmark = pytest.mark.django_db


def test_recent_failures_read_names_as_the_task_list_does(viewer_client):
    now = time.time()
    write_events(failed(new_task_id(), published=now - 60, failed_at=now - 50))
    write_events(story_success(new_task_id(), t0=now - 40))  # shop.send_invoice: same module
    body = viewer_client.get("/").content.decode()
    assert 'title="shop.charge">charge</a>' in body
    assert 'title="Declined">Declined: no</span>' in body


def test_the_page_says_when_the_figures_are_not_measured_yet(viewer_client, redis_client):
    now = time.time()
    rows(now)
    body = viewer_client.get(reverse("overview")).content.decode()
    assert "Not measured yet" in body
    assert '<ul class="totals">' not in body  # no row of zeros
    assert "No tasks recorded yet" not in body
    assert "Declined: no" in body  # recent failures are read live

    measure_overview(now, client=redis_client)
    body = viewer_client.get(reverse("overview"), headers={"HX-Request": "true"}).content.decode()
    assert "Not measured yet" not in body and '<ul class="totals">' in body
    assert "it has not checked since" not in body


def test_the_page_says_when_the_figures_are_old(viewer_client, redis_client):
    rows(time.time())
    measure_overview(time.time() - 600, client=redis_client)
    body = viewer_client.get(reverse("overview")).content.decode()
    assert "These figures are from the monitor's check 10m" in body
    assert "ago: it has not checked since" in body


def test_the_overview_banner_says_how_many_entries_the_cap_dropped(viewer_client, redis_client):
    stream = settings.TASKTRAIL_STREAM
    redis_client.hset(stream + ":trimmed", mapping={"entries": 1234, "at": time.time() - 30})
    partial = viewer_client.get(reverse("overview"), headers={"HX-Request": "true"})
    assert "1,234 stream entries were dropped at the stream&#x27;s length cap" in (
        partial.content.decode()
    )
    redis_client.hset(stream + ":trimmed", "at", time.time() - 2 * 24 * 3600)  # long ago
    assert monitor_status(redis_client).trimmed == 1234
    assert "dropped" not in (monitor_status(redis_client).problem or "")

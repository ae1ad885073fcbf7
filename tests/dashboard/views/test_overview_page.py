"""The overview page reads names and errors as the task list does."""

from __future__ import annotations

import time

import pytest

from dashboard.ingest.writer import write_events
from tests.conftest import new_task_id, story_success
from tests.dashboard.test_overview import failed

pytestmark = pytest.mark.django_db


def test_recent_failures_read_names_as_the_task_list_does(viewer_client):
    now = time.time()
    write_events(failed(new_task_id(), published=now - 60, failed_at=now - 50))
    write_events(story_success(new_task_id(), t0=now - 40))  # shop.send_invoice: same module
    body = viewer_client.get("/").content.decode()
    assert 'title="shop.charge">charge</a>' in body
    assert 'title="Declined">Declined: no</span>' in body

"""The overview's queue table and recent failures."""

from __future__ import annotations

import time

import pytest

from dashboard.ingest.writer import write_events
from dashboard.selectors.tasks import overview
from tests.conftest import event, new_task_id, story_success
from tests.overview_figures import measure_overview

pytestmark = pytest.mark.django_db


def failed(task_id: str, *, published: float, failed_at: float) -> list:
    return [
        event("published", task_id, published, name="shop.charge", queue="default",
              retries=0, published_at=published),
        event("started", task_id, published + 1, retries=0, hostname="w1@h", pid=1),
        event("failed", task_id, failed_at, retries=0, hostname="w1@h", pid=1,
              exc_type="Declined", exc_message="no"),
    ]  # fmt: skip


def test_recent_failures_are_newest_failure_first():
    now = time.time()
    slow, quick = new_task_id(), new_task_id()
    write_events(failed(slow, published=now - 600, failed_at=now - 10))  # published first
    write_events(failed(quick, published=now - 300, failed_at=now - 290))
    assert [t.task_id for t in overview().recent_failures] == [slow, quick]


def test_a_row_without_its_queue_yet_is_no_queue_of_its_own(redis_client):
    now = time.time()
    write_events(story_success(new_task_id(), t0=now - 60))
    # worker events of another task arrived before its publish event: no queue known yet
    write_events([event("started", new_task_id(), now - 5, retries=0, hostname="w1@h", pid=1)])
    measure_overview(client=redis_client)
    assert [q.queue for q in overview().queues] == ["default"]

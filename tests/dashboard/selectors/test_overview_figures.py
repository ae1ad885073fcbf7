"""The overview shows the figures the monitor's check counted, read from Redis in one GET, and
says so plainly when there are none yet or they are old."""

from __future__ import annotations

import json
import time

import pytest
from django.conf import settings

from dashboard import redis_keys
from dashboard.alerts.runner import CheckRunner
from dashboard.alerts.worker_probe import WorkersSeen
from dashboard.ingest.writer import write_events
from dashboard.selectors.tasks import SPARK_BUCKETS, overview
from tests.conftest import event, new_task_id, story_success
from tests.dashboard.test_overview import failed
from tests.overview_figures import measure_overview

pytestmark = pytest.mark.django_db


def rows(now: float) -> None:
    write_events(story_success(new_task_id(), t0=now - 600))  # default, finished 10 minutes ago
    write_events(failed(new_task_id(), published=now - 120, failed_at=now - 100))
    write_events(
        [event("published", new_task_id(), now - 30, name="shop.sync", queue="inventory",
               published_at=now - 30)]
    )  # fmt: skip
    running = new_task_id()
    write_events(
        [
            event("published", running, now - 20, name="shop.sync", queue="inventory",
                  published_at=now - 20),
            event("started", running, now - 19, retries=0, hostname="w1@h", pid=1),
        ]
    )  # fmt: skip


def test_the_overview_shows_what_the_monitors_check_counted(redis_client):
    now = time.time()
    rows(now)
    assert not overview(redis_client).measured  # nothing counted yet: no figures, no zeros
    runner = CheckRunner(client=redis_client, probe=lambda: WorkersSeen(now, {}), clock=lambda: now)
    assert runner.run_once().overview_seconds > 0
    shown = overview(redis_client)
    assert shown.measured and not shown.stale
    by_queue = {q.queue: q for q in shown.queues}
    assert sorted(by_queue) == ["default", "inventory"]
    assert (by_queue["inventory"].waiting, by_queue["inventory"].running) == (1, 1)
    assert by_queue["default"].failed_last_hour == 1
    assert len(by_queue["default"].finished_per_bucket) == SPARK_BUCKETS
    assert sum(by_queue["default"].finished_per_bucket) == 2  # the success and the failure
    assert shown.totals == {"SUCCESS": 1, "FAILURE": 1, "PENDING": 1, "STARTED": 1}

    # a new row shows only once the monitor counts again
    write_events(story_success(new_task_id(), t0=now - 30))
    assert overview(redis_client).totals["SUCCESS"] == 1
    runner.run_once()
    assert overview(redis_client).totals["SUCCESS"] == 2


def test_reading_the_overview_is_one_query_whatever_the_history(
    redis_client, django_assert_num_queries
):
    now = time.time()
    for _ in range(20):
        rows(now)
    measure_overview(now, client=redis_client)
    with django_assert_num_queries(1):  # the recent failures; the counts come from Redis
        shown = overview(redis_client)
    assert shown.totals["FAILURE"] == 20 and len(shown.recent_failures) == 10


def test_unreadable_figures_are_not_measured_rather_than_a_crash(redis_client):
    key = redis_keys.overview_figures(settings.TASKTRAIL_STREAM)
    for raw in (b"not json", b"[]", json.dumps({"at": 1.0, "queues": {"q": {}}, "totals": {}})):
        redis_client.set(key, raw)
        assert not overview(redis_client).measured

"""Retry decides from the shop's task catalog: a task some recent worker registered may be retried,
unless it opted out; one only stale workers had, or none, is refused with the reason."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User

from dashboard.ingest.writer import write_events
from dashboard.models import TaskRun
from dashboard.selectors.action_options import bulk_preview, retry_precheck, task_action_options
from dashboard.selectors.catalog import TaskCatalog
from tests.catalog import register_task
from tests.conftest import event, new_task_id

pytestmark = pytest.mark.django_db

T0 = 1_750_000_000.0
DAY = 86400.0


def failed(name: str | None, queue: str | None = "default") -> TaskRun:
    task_id = new_task_id()
    fields = {"name": name, "queue": queue, "args": "[1]", "kwargs": "{}", "published_at": T0}
    write_events(
        [
            event("published", task_id, T0, **fields),
            event("failed", task_id, T0 + 1, exc_type="ValueError", exc_message="boom"),
        ]
    )
    return TaskRun.objects.get(task_id=task_id)


def precheck(name: str | None) -> str | None:
    return retry_precheck(TaskCatalog(), failed(name))


def test_a_task_a_recent_worker_registered_may_be_retried():
    register_task("shop.sync", age_seconds=3 * DAY)
    assert precheck("shop.sync") is None


def test_a_task_no_worker_registered_is_refused():
    assert precheck("shop.never") == (
        "no recent worker of this shop has registered shop.never "
        "(workers report their tasks when they start)"
    )


def test_a_task_only_stale_workers_had_is_refused_saying_when_it_was_last_seen():
    max_age = settings.TASKTRAIL_CATALOG_MAX_AGE_SECONDS
    register_task("shop.old", age_seconds=max_age + 2 * DAY)
    assert precheck("shop.old") == (
        "no recent worker of this shop has registered shop.old "
        "(workers report their tasks when they start); last reported 9 days ago"
    )


def test_recent_means_the_configured_age(settings):
    settings.TASKTRAIL_CATALOG_MAX_AGE_SECONDS = 3600
    register_task("shop.hourly", age_seconds=2 * 3600)
    assert "no recent worker" in precheck("shop.hourly")
    settings.TASKTRAIL_CATALOG_MAX_AGE_SECONDS = 3 * 3600
    assert precheck("shop.hourly") is None


def test_an_opted_out_task_is_refused():
    register_task("shop.charge", retryable=False)
    assert precheck("shop.charge") == "shop.charge opts out of operator retries (not idempotent)"


def test_the_newest_report_decides_when_workers_disagree():
    register_task("shop.charge", hostname="old@h", retryable=True, age_seconds=DAY)
    register_task("shop.charge", hostname="new@h", retryable=False)
    assert "opts out" in precheck("shop.charge")
    register_task("shop.charge", hostname="newer@h", retryable=True)
    assert precheck("shop.charge") is None


def test_a_task_without_a_recorded_name_is_refused():
    assert precheck(None) == "its task name was not recorded"


def test_the_catalog_lists_recent_hosts_newest_first_and_the_newest_queue():
    register_task("shop.a", hostname="w1@h", queue="one", age_seconds=60)
    register_task("shop.a", hostname="w2@h", queue="two")
    register_task("shop.a", hostname="w3@h", queue="old", age_seconds=30 * DAY)
    known = TaskCatalog().get("shop.a")
    assert known is not None
    assert (known.hostnames, known.host_count, known.queue) == (("w2@h", "w1@h"), 2, "two")
    assert TaskCatalog().default_queue("shop.a") == "two"
    assert TaskCatalog().default_queue("shop.none") is None


def test_loading_many_names_reads_each_chunk_once(django_assert_num_queries):
    for i in range(3):
        register_task(f"shop.t{i}")
    catalog = TaskCatalog()
    with django_assert_num_queries(2):  # the recent reports; when the missing one was last seen
        catalog.load([f"shop.t{i}" for i in range(3)] + ["shop.missing", None])
        assert [catalog.get(f"shop.t{i}") is not None for i in range(3)] == [True] * 3
        assert catalog.get("shop.missing") is None


def operator() -> User:
    user = User.objects.create_user(f"op-{new_task_id()}")
    user.groups.add(Group.objects.get(name="operator"))
    return User.objects.get(pk=user.pk)


def test_the_task_page_and_bulk_confirmation_use_the_catalog():
    register_task("shop.ok")
    register_task("shop.charge", retryable=False)
    ok, charge, gone = failed("shop.ok"), failed("shop.charge"), failed("shop.gone")
    options = task_action_options(user=operator(), task=gone)
    assert options["retry"].why_not is not None
    assert options["retry"].why_not.startswith("no recent worker of this shop has registered")
    assert task_action_options(user=operator(), task=ok)["retry"].offered
    preview = bulk_preview(kind="retry", task_ids=[ok.task_id, charge.task_id, gone.task_id])
    assert preview.acted_on == 1
    assert sorted(reason for reason, _ in preview.refused) == [
        "no recent worker of this shop has registered shop.gone "
        "(workers report their tasks when they start)",
        "shop.charge opts out of operator retries (not idempotent)",
    ]


def test_bulk_confirmation_reads_the_catalog_per_name_not_per_task():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    register_task("shop.old", age_seconds=30 * DAY)
    few = [failed("shop.old").task_id for _ in range(2)] + [failed("shop.ok").task_id]
    many = few + [failed("shop.old").task_id for _ in range(40)]
    counts = []
    for ids in (few, many):
        with CaptureQueriesContext(connection) as captured:
            preview = bulk_preview(kind="retry", task_ids=ids)
        counts.append(len(captured.captured_queries))
        assert preview.acted_on == 0 and preview.refused_count == len(ids)
    assert counts[0] == counts[1]

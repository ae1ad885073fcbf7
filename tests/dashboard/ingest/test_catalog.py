"""The monitor and the task catalog: a worker's report becomes its RegisteredTask rows; a hostile
one is dead-lettered and the monitor goes on with the rest of the stream."""

from __future__ import annotations

import datetime as dt
import time

import msgpack
import pytest
from django.conf import settings
from django.utils import timezone

from dashboard.ingest.catalog import write_catalog
from dashboard.ingest.monitor import Monitor
from dashboard.ingest.stream import StreamConsumer
from dashboard.models import RegisteredTask, TaskRun
from tasktrail.catalog import ENTRY_FIELD, MAX_TASKS, Report, TaskInfo, encode_catalog
from tasktrail.events import encode_batch
from tests.conftest import new_task_id, story_success

pytestmark = pytest.mark.django_db


def make_monitor(client):
    return Monitor(StreamConsumer(client, settings.TASKTRAIL_STREAM, consumer="catalog-test"))


def report(hostname="w1@h", tasks=None, ts=None, truncated=0) -> Report:
    tasks = tasks if tasks is not None else (TaskInfo("shop.a", "qa"), TaskInfo("shop.b"))
    return Report(hostname, "shop", ts or time.time(), tuple(tasks), pid=7, truncated=truncated)


def rows(hostname="w1@h"):
    return {r.name: r for r in RegisteredTask.objects.filter(hostname=hostname).order_by("name")}


def test_the_monitor_writes_a_workers_catalog(redis_client):
    tasks = (
        TaskInfo("shop.charge", "billing", False, 5, 30.0, 20.0),
        TaskInfo("shop.sync", None, True, None, None, None),
    )
    redis_client.xadd(settings.TASKTRAIL_STREAM, encode_catalog(report(tasks=tasks)))
    stats = make_monitor(redis_client).run(drain=True)
    assert (stats.catalogs, stats.rejected) == (1, 0)
    charge, sync = rows()["shop.charge"], rows()["shop.sync"]
    assert (charge.queue, charge.retryable, charge.max_retries) == ("billing", False, 5)
    assert (charge.time_limit, charge.soft_time_limit, charge.app_name) == (30.0, 20.0, "shop")
    assert (sync.queue, sync.retryable, sync.max_retries) == (None, True, None)
    assert redis_client.xlen(settings.TASKTRAIL_STREAM) == 0


def test_a_new_report_replaces_the_workers_tasks_and_leaves_other_workers_alone():
    write_catalog(report("w2@h", [TaskInfo("shop.a")]))
    write_catalog(report(ts=time.time() - 60))
    write_catalog(report(tasks=[TaskInfo("shop.a", "moved"), TaskInfo("shop.c")]))
    assert {n: r.queue for n, r in rows().items()} == {"shop.a": "moved", "shop.c": None}
    assert set(rows("w2@h")) == {"shop.a"}


def test_a_report_that_left_tasks_out_removes_none():
    write_catalog(report(ts=time.time() - 60))
    write_catalog(report(tasks=[TaskInfo("shop.c")], truncated=3))
    assert set(rows()) == {"shop.a", "shop.b", "shop.c"}


def test_an_older_report_arriving_late_is_ignored():
    write_catalog(report(tasks=[TaskInfo("shop.new")]))
    late = write_catalog(report(tasks=[TaskInfo("shop.old")], ts=time.time() - 600))
    assert late.skipped and set(rows()) == {"shop.new"}


def test_a_worker_clock_ahead_counts_as_now():
    now = timezone.now()
    write_catalog(report(ts=now.timestamp() + 10 * 86400), now=now)
    assert {r.last_reported_at for r in rows().values()} == {now}


def test_rows_long_past_recent_are_kept_a_while_then_pruned():
    age = settings.TASKTRAIL_CATALOG_MAX_AGE_SECONDS
    write_catalog(report("gone@h", ts=time.time() - 3 * age))
    assert rows("gone@h")  # stale, kept to say when the task was last seen
    write_catalog(report(), now=timezone.now() + dt.timedelta(seconds=2 * age))
    assert not rows("gone@h") and rows()


def test_the_same_report_twice_is_written_once(redis_client):
    fields = encode_catalog(report())
    redis_client.xadd(settings.TASKTRAIL_STREAM, fields)
    redis_client.xadd(settings.TASKTRAIL_STREAM, fields)  # at-least-once delivery
    assert make_monitor(redis_client).run(drain=True).catalogs == 2
    assert set(rows()) == {"shop.a", "shop.b"}


def nested(depth: int) -> object:
    value: object = "x"
    for _ in range(depth):
        value = {"k": value}
    return value


def body(**changes) -> dict:
    value = {"v": 1, "hostname": "evil@h", "app": "shop", "ts": time.time(), "tasks": []}
    value.update(changes)
    return value


HOSTILE = [
    {ENTRY_FIELD: b"\xc1 not msgpack"},
    {ENTRY_FIELD: b"\x91" * 200_000 + b"\xc0"},  # nested 200,000 deep
    {ENTRY_FIELD: msgpack.packb(body(hostname=nested(100)))},
    {ENTRY_FIELD: msgpack.packb(body(tasks=[{"name": "x"}] * (MAX_TASKS + 1)))},
    {ENTRY_FIELD: msgpack.packb(body(tasks=[{"name": "shop." + "y" * 10_000_000}]))},  # huge
    {ENTRY_FIELD: msgpack.packb(body(ts=[1, 2]))},
    {ENTRY_FIELD: msgpack.packb(body(v="1"))},
    {ENTRY_FIELD: msgpack.packb("just a string")},
]


def test_hostile_catalogs_are_dead_lettered_and_the_monitor_goes_on(redis_client):
    stream = settings.TASKTRAIL_STREAM
    for fields in HOSTILE:
        redis_client.xadd(stream, fields)
    task_id = new_task_id()
    redis_client.xadd(stream, encode_batch(story_success(task_id)))
    bad_items = [{"name": 1}, {"name": "shop.ok", "retryable": "yes"}, nested(60)]
    redis_client.xadd(stream, {ENTRY_FIELD: msgpack.packb(body(tasks=[*bad_items, {"name": "a"}]))})
    stats = make_monitor(redis_client).run(drain=True)
    assert stats.rejected == len(HOSTILE) + 1  # one dead letter for the three bad items
    assert TaskRun.objects.get(task_id=task_id).state == "SUCCESS"
    assert set(rows("evil@h")) == {"a"}  # the valid task of the partly bad catalog is kept
    dead = redis_client.xrange(stream + ":dead")
    assert len(dead) == stats.rejected
    assert all(len(fields[b"raw"]) <= 65536 for _, fields in dead)
    assert b"3 catalog tasks left out" in dead[-1][1][b"reason"]
    assert redis_client.xlen(stream) == 0


def test_reported_at_is_the_reports_time():
    ts = time.time() - 3600
    write_catalog(report(ts=ts))
    expected = dt.datetime.fromtimestamp(ts, tz=dt.UTC)
    assert all(
        abs((r.last_reported_at - expected).total_seconds()) < 0.001 for r in rows().values()
    )


def test_the_explicit_opt_in_and_parameter_names_reach_the_rows_and_the_catalog(redis_client):
    from dashboard.selectors.catalog import TaskCatalog

    tasks = (
        TaskInfo(
            "shop.refund", "billing", declared_retryable=True, arg_names=("order_id", "cents")
        ),
        TaskInfo("shop.sync", arg_names=()),
        TaskInfo("shop.legacy"),  # an older client: neither field
    )
    redis_client.xadd(settings.TASKTRAIL_STREAM, encode_catalog(report(tasks=tasks)))
    assert make_monitor(redis_client).run(drain=True).catalogs == 1
    stored = rows()
    assert (stored["shop.refund"].declared_retryable, stored["shop.refund"].arg_names) == (
        True,
        "order_id,cents",
    )
    assert (stored["shop.sync"].declared_retryable, stored["shop.sync"].arg_names) == (False, "")
    assert (stored["shop.legacy"].declared_retryable, stored["shop.legacy"].arg_names) == (
        False,
        None,
    )
    catalog = TaskCatalog()
    assert catalog.get("shop.refund").declared_retryable is True
    assert catalog.get("shop.refund").arg_names == ("order_id", "cents")
    assert catalog.get("shop.sync").arg_names == ()
    assert catalog.get("shop.legacy").arg_names is None

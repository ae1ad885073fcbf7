"""The Workers page's figures, from Worker / WorkerCounts / RegisteredTask / TaskRun rows: the
order an on-call person reads, the last hour's counts, releases mixed among live workers, and
task names waiting that no live worker has registered."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dashboard.models import RegisteredTask, TaskRun
from dashboard.selectors import workers as selectors
from dashboard.selectors.workers import (
    MAX_HOSTNAMES,
    MAX_RUNNING_LINKS,
    MAX_UNREGISTERED_NAMES,
    last_hour_counts,
    unregistered_task_names,
    workers_overview,
)
from tests.worker_rows import count_minute, make_worker

pytestmark = pytest.mark.django_db


def ago(**delta: float) -> dt.datetime:
    return timezone.now() - dt.timedelta(**delta)


def waiting(name: str | None, *, age_minutes: float = 5, state: str = "PENDING",
            queue: str = "default") -> TaskRun:  # fmt: skip
    at = ago(minutes=age_minutes)
    return TaskRun.objects.create(
        task_id=f"t-{name}-{TaskRun.objects.count()}",
        name=name,
        queue=queue,
        state=state,
        first_seen_at=at,
        published_at=at,
        updated_at=at,
    )


def registered(name: str, hostname: str) -> RegisteredTask:
    return RegisteredTask.objects.create(
        hostname=hostname, name=name, app_name="shop", last_reported_at=timezone.now()
    )


def test_no_worker_rows_is_the_empty_state():
    overview = workers_overview()
    assert overview.empty
    assert overview.groups == []
    assert overview.unregistered is None  # no heartbeat yet: no claim about registrations


def test_gone_workers_come_first_then_online_then_stopped():
    make_worker("w2@b", app_name="shop")
    make_worker("w1@a", app_name="shop")
    make_worker("w0@z", app_name="billing")
    make_worker("old@x", "gone", last_heartbeat_at=ago(minutes=30), gone_at=ago(minutes=29))
    make_worker("new@x", "gone", last_heartbeat_at=ago(minutes=3), gone_at=ago(minutes=2))
    make_worker("bye@x", "offline", last_heartbeat_at=ago(minutes=10), stopped_at=ago(minutes=10))

    groups = workers_overview().groups

    assert [g.status for g in groups] == ["gone", "online", "offline"]
    assert [w.hostname for w in groups[0].workers] == ["new@x", "old@x"]  # newest first
    assert [w.hostname for w in groups[1].workers] == ["w0@z", "w1@a", "w2@b"]  # by app, host
    assert [w.hostname for w in groups[2].workers] == ["bye@x"]
    assert [g.total for g in groups] == [2, 3, 1]


def test_stopped_and_gone_workers_are_listed_for_a_day_and_counted_after():
    make_worker("live@x")
    make_worker("yesterday@x", "gone", last_heartbeat_at=ago(hours=25), gone_at=ago(hours=25))
    make_worker("today@x", "gone", last_heartbeat_at=ago(hours=2), gone_at=ago(hours=2))
    make_worker("long-ago@x", "offline", last_heartbeat_at=ago(days=3), stopped_at=ago(days=3))

    groups = {g.status: g for g in workers_overview().groups}

    assert [w.hostname for w in groups["gone"].workers] == ["today@x"]
    assert groups["gone"].not_listed == 1
    assert groups["offline"].workers == []
    assert groups["offline"].not_listed == 1


def test_listing_is_capped_per_status(monkeypatch):
    monkeypatch.setitem(selectors.LISTED, "online", 2)
    for i in range(4):
        make_worker(f"w{i}@h")
    (group,) = workers_overview().groups
    assert len(group.workers) == 2
    assert group.not_listed == 2


def test_last_hour_counts_sum_the_minutes_of_the_last_60_minutes_only():
    make_worker("w1@h")
    make_worker("w2@h")
    count_minute("w1@h", 0, processed=5, failed=1)
    count_minute("w1@h", 30, processed=7)
    count_minute("w1@h", 59, processed=11, failed=2)
    count_minute("w1@h", 61, processed=1000, failed=1000)  # over an hour ago
    count_minute("w1@h", 180, processed=1000, failed=1000)
    count_minute("w2@h", 10, processed=3)

    assert last_hour_counts(["w1@h", "w2@h", "w3@h"]) == {"w1@h": (23, 3), "w2@h": (3, 0)}
    rows = {w.hostname: w for w in workers_overview().groups[0].workers}
    assert (rows["w1@h"].processed_last_hour, rows["w1@h"].failed_last_hour) == (23, 3)
    assert (rows["w2@h"].processed_last_hour, rows["w2@h"].failed_last_hour) == (3, 0)


def test_uptime_runs_until_now_or_until_the_worker_stopped():
    started = ago(hours=3)
    make_worker("up@h", started_at=started)
    make_worker("bye@h", "offline", started_at=started, stopped_at=ago(hours=1),
                last_heartbeat_at=ago(hours=1, seconds=2))  # fmt: skip
    make_worker("gone@h", "gone", started_at=started, last_heartbeat_at=ago(hours=2),
                gone_at=ago(hours=2) + dt.timedelta(seconds=30))  # fmt: skip
    make_worker("unknown@h", started_at=None)

    rows = {w.hostname: w for g in workers_overview().groups for w in g.workers}

    assert rows["up@h"].uptime == pytest.approx(3 * 3600, abs=60)
    assert rows["bye@h"].uptime == pytest.approx(2 * 3600, abs=5)
    assert rows["gone@h"].uptime == pytest.approx(3600, abs=5)  # until its last heartbeat
    assert rows["unknown@h"].uptime is None


def test_running_task_links_are_bounded_and_the_count_says_how_many():
    ids = [f"task-{i}" for i in range(MAX_RUNNING_LINKS + 5)]
    make_worker("busy@h", running=ids, running_count=40)
    (worker,) = workers_overview().groups[0].workers
    assert worker.running == tuple(ids[:MAX_RUNNING_LINKS])
    assert worker.running_count == 40
    assert worker.running_more == 40 - MAX_RUNNING_LINKS


def test_heartbeat_lists_of_the_wrong_shape_are_ignored_not_a_crash():
    make_worker("odd@h", queues={"default": 1}, running=["ok-id", 7, None, ["x"], ""],
                running_count=-3)  # fmt: skip
    (worker,) = workers_overview().groups[0].workers
    assert worker.queues == ()
    assert worker.running == ("ok-id",)
    assert worker.running_count == 1


def test_a_release_mix_among_live_workers_of_one_app_is_reported():
    for host in ("w3@h", "w1@h", "w2@h"):
        make_worker(host, release="2026.12.1")
    make_worker("w4@h", release="2026.11.30")
    make_worker("stopped@h", "offline", release="2025.01.01")  # not live: no part in the mix
    make_worker("b1@h", app_name="billing", release="7")  # another app, one release
    make_worker("b2@h", app_name="billing", release="7")

    (mix,) = workers_overview().release_mixes

    assert mix.app_name == "shop"
    assert [(r.release, r.count, r.hostnames) for r in mix.releases] == [
        ("2026.12.1", 3, ("w1@h", "w2@h", "w3@h")),
        ("2026.11.30", 1, ("w4@h",)),
    ]


def test_one_release_or_a_worker_without_one():
    make_worker("w1@h", release="2026.12.1")
    make_worker("w2@h", release="2026.12.1")
    assert workers_overview().release_mixes == []
    make_worker("w3@h", release="")  # TASKTRAIL_APP_VERSION unset on that one
    (mix,) = workers_overview().release_mixes
    assert [(r.release, r.count) for r in mix.releases] == [("2026.12.1", 2), ("", 1)]


def test_the_release_banner_names_a_bounded_number_of_hosts():
    for i in range(MAX_HOSTNAMES + 3):
        make_worker(f"new-{i:02d}@h", release="2")
    make_worker("old@h", release="1")
    (mix,) = workers_overview().release_mixes
    assert len(mix.releases[0].hostnames) == MAX_HOSTNAMES
    assert mix.releases[0].hostnames_more == 3


def test_a_waiting_task_name_no_online_worker_registered_is_reported():
    make_worker("new@h")
    make_worker("old@h", "gone", last_heartbeat_at=ago(minutes=5), gone_at=ago(minutes=4))
    registered("shop.known", "new@h")
    registered("shop.only_on_gone", "old@h")
    waiting("shop.known")
    waiting("shop.only_on_gone", age_minutes=20, queue="emails")
    waiting("shop.only_on_gone", age_minutes=2, queue="emails")
    waiting("shop.renamed", age_minutes=1)
    waiting("shop.renamed", age_minutes=90)  # published over an hour ago: not read
    waiting("shop.finished", state="SUCCESS")
    waiting("shop.running", state="STARTED")
    waiting(None)  # no name recorded yet

    check = unregistered_task_names()

    assert check.any_online
    assert not check.capped and not check.more_names
    assert [(n.name, n.waiting, n.queues) for n in check.names] == [
        ("shop.only_on_gone", 2, ("emails",)),
        ("shop.renamed", 1, ("default",)),
    ]
    assert (
        check.names[0].oldest
        == TaskRun.objects.filter(name="shop.only_on_gone").earliest("first_seen_at").first_seen_at
    )


def test_with_no_worker_online_every_waiting_name_is_reported():
    make_worker("bye@h", "offline", last_heartbeat_at=ago(minutes=1), stopped_at=ago(minutes=1))
    registered("shop.known", "bye@h")
    waiting("shop.known")
    check = workers_overview().unregistered
    assert check is not None
    assert not check.any_online
    assert [n.name for n in check.names] == ["shop.known"]


def test_the_unregistered_check_reads_a_bounded_number_of_rows_and_names(monkeypatch):
    monkeypatch.setattr(selectors, "UNREGISTERED_ROWS", 30)
    make_worker("w@h")
    names = MAX_UNREGISTERED_NAMES + 5
    for i in range(names):
        waiting(f"shop.n{i:02d}", age_minutes=1 + i)
        waiting(f"shop.n{i:02d}", age_minutes=1 + i + names)  # older than every first row
    check = unregistered_task_names()
    assert check.capped  # 30 of the 50 rows read: the counts say "at least"
    assert check.more_names
    assert len(check.names) == MAX_UNREGISTERED_NAMES
    assert sum(n.waiting for n in check.names) <= 30
    assert {n.name for n in check.names} <= {f"shop.n{i:02d}" for i in range(names)}


def test_the_page_costs_the_same_queries_for_few_or_many_workers_and_names():
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            workers_overview()
        return len(captured)

    def add(n: int, prefix: str) -> None:
        for i in range(n):
            make_worker(f"{prefix}{i}@h", running=[f"t{i}"], running_count=1)
            make_worker(f"{prefix}{i}-gone@h", "gone", gone_at=ago(minutes=1))
            make_worker(f"{prefix}{i}-bye@h", "offline", stopped_at=ago(minutes=1))
            count_minute(f"{prefix}{i}@h", 1, processed=1)
            waiting(f"shop.{prefix}{i}")

    add(1, "a")
    few = queries()
    add(10, "b")
    make_worker("mixed@h", release="other")
    assert queries() == few

"""Workers' heartbeats into rows: one ``Worker`` row per hostname on the monitor's clock, per-minute
counts from the counters' growth within an incarnation, goodbyes, restarts, and the monitor loop
dead-lettering what is not a heartbeat."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgpack
import pytest
from django.conf import settings

from dashboard.ingest import heartbeats
from dashboard.ingest.heartbeats import write_heartbeats
from dashboard.ingest.monitor import Monitor
from dashboard.ingest.stream import StreamConsumer
from dashboard.ingest.writer import write_events
from dashboard.models import TaskRun, Worker, WorkerCounts
from tasktrail.heartbeat import ENTRY_FIELD, Heartbeat, encode_heartbeat
from tests.conftest import event, new_task_id

pytestmark = pytest.mark.django_db

T0 = 1_790_000_000.0  # 2026-09-21 16:53:20 UTC
PID = 4242


def at(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC)


def beat(host: str = "w1@h", ts: float = T0, **changes: Any) -> Heartbeat:
    values: dict[str, Any] = {
        "hostname": host,
        "ts": ts,
        "pid": PID,
        "started_at": T0 - 600,
        "app": "shop",
        "pool": "prefork",
        "concurrency": 4,
        "queues": ("default",),
        "processed": 0,
        "failed": 0,
        "celery": "5.7.0",
        "release": "r1",
    }
    values.update(changes)
    return Heartbeat(**values)


def counts(host: str = "w1@h") -> dict[str, tuple[int, int]]:
    rows = WorkerCounts.objects.filter(hostname=host).order_by("minute")
    return {f"{r.minute:%H:%M}": (r.processed, r.failed) for r in rows}


def test_the_first_heartbeat_makes_an_online_row_on_the_monitors_clock():
    received = at(T0 + 30)
    write_heartbeats([beat(ts=T0 - 3000, running=("t-1",), running_count=1)], now=received)
    row = Worker.objects.get(hostname="w1@h")
    assert row.status == Worker.Status.ONLINE
    assert row.last_heartbeat_at == received == row.first_seen_at  # not the sender's clock
    assert (row.app_name, row.pool, row.concurrency, row.queues) == (
        "shop",
        "prefork",
        4,
        ["default"],
    )
    assert (row.running, row.running_count, row.release) == (["t-1"], 1, "r1")
    assert row.started_at == at(T0 - 600)


def test_a_start_time_ahead_of_the_monitor_is_capped_at_its_clock():
    write_heartbeats([beat(ts=T0 + 7200, started_at=T0 + 7000)], now=at(T0))
    assert Worker.objects.get().started_at == at(T0)


def test_per_minute_counts_are_the_counters_growth_and_a_restart_starts_from_its_own():
    minute = T0 - T0 % 60
    write_heartbeats([beat(processed=100, failed=4)], now=at(minute + 1))  # since its start
    write_heartbeats([beat(processed=110, failed=5)], now=at(minute + 6))
    write_heartbeats([beat(processed=130, failed=5)], now=at(minute + 61))
    # restarted: a new pid and start, its counters from zero
    restart = {"pid": PID + 1, "started_at": minute + 62}
    write_heartbeats([beat(processed=3, failed=1, **restart)], now=at(minute + 66))
    write_heartbeats([beat(processed=7, failed=1, **restart)], now=at(minute + 121))
    first = at(minute)
    assert counts() == {
        f"{first:%H:%M}": (110, 5),
        f"{first + dt.timedelta(minutes=1):%H:%M}": (20 + 3, 0 + 1),
        f"{first + dt.timedelta(minutes=2):%H:%M}": (4, 0),
    }
    assert Worker.objects.get().processed == 7


def test_two_beats_in_one_batch_are_taken_in_stream_order():
    write_heartbeats([beat(processed=5), beat(processed=9)], now=at(T0))
    assert sum(p for p, _ in counts().values()) == 9
    assert Worker.objects.get().processed == 9


def test_a_beat_behind_the_stored_counters_is_ignored():
    write_heartbeats([beat(processed=9)], now=at(T0))
    written = write_heartbeats([beat(processed=5)], now=at(T0 + 5))
    assert written.ignored == 1
    row = Worker.objects.get()
    assert row.processed == 9 and row.last_heartbeat_at == at(T0)


def test_a_goodbye_makes_it_offline_and_a_late_beat_does_not_bring_it_back():
    write_heartbeats([beat()], now=at(T0))
    write_heartbeats([beat(goodbye=True)], now=at(T0 + 5))
    row = Worker.objects.get()
    assert row.status == Worker.Status.OFFLINE and row.stopped_at == at(T0 + 5)
    assert write_heartbeats([beat()], now=at(T0 + 6)).ignored == 1
    assert Worker.objects.get().status == Worker.Status.OFFLINE
    write_heartbeats([beat(pid=PID + 1, started_at=T0 + 10)], now=at(T0 + 12))  # started again
    row = Worker.objects.get()
    assert row.status == Worker.Status.ONLINE and row.stopped_at is None


def test_a_heartbeat_brings_a_gone_worker_back():
    write_heartbeats([beat()], now=at(T0))
    Worker.objects.update(status=Worker.Status.GONE, gone_at=at(T0 + 60))
    write_heartbeats([beat()], now=at(T0 + 61))
    row = Worker.objects.get()
    assert row.status == Worker.Status.ONLINE and row.gone_at is None


def started(worker: str, at_ts: float) -> str:
    task_id = new_task_id()
    write_events(
        [
            event("published", task_id, at_ts - 1, name="shop.sync", queue="default"),
            event("started", task_id, at_ts, retries=0, hostname=worker, pid=7),
        ]
    )
    return task_id


def test_a_restart_under_the_same_name_loses_the_earlier_process_tasks():
    write_heartbeats([beat()], now=at(T0))
    died_with = started("w1@h", T0 - 30)  # the earlier process ran it, then died
    redelivered = started("w1@h", T0 - 20)  # running again in the new process
    since_restart = started("w1@h", T0 + 50)
    other = started("w2@h", T0 - 30)
    new = {"pid": PID + 1, "started_at": T0 + 40}
    written = write_heartbeats([beat(running=(redelivered,), **new)], now=at(T0 + 55))
    assert (written.restarts, written.lost) == (1, 1)
    states = dict(TaskRun.objects.values_list("task_id", "state"))
    assert states[died_with] == "LOST"
    assert states[redelivered] == states[since_restart] == states[other] == "STARTED"


def test_counts_older_than_a_day_are_pruned(monkeypatch):
    old = at(T0 - 2 * 86400).replace(second=0)
    WorkerCounts.objects.create(hostname="w1@h", minute=old, processed=1)
    monkeypatch.setattr(heartbeats, "_next_prune", 0.0)
    write_heartbeats([beat(processed=2)], now=at(T0))
    assert not WorkerCounts.objects.filter(minute=old).exists()
    assert WorkerCounts.objects.count() == 1


# -- through the monitor loop ---------------------------------------------------------------------


def test_the_monitor_writes_heartbeats_and_dead_letters_bad_ones(redis_client):
    stream = settings.TASKTRAIL_STREAM
    redis_client.xadd(stream, encode_heartbeat(beat(ts=T0)))
    redis_client.xadd(stream, {ENTRY_FIELD: msgpack.packb({"v": 1, "hostname": "x\ny"})})
    redis_client.xadd(stream, {ENTRY_FIELD: b"\xc1 not msgpack"})
    consumer = StreamConsumer(redis_client, stream, consumer="hb-test")
    stats = Monitor(consumer).run(drain=True)
    assert stats.heartbeats == 1 and stats.rejected == 2
    assert Worker.objects.get().hostname == "w1@h"
    dead = [fields[b"reason"].decode() for _, fields in redis_client.xrange(consumer.dead_stream)]
    assert any("hostname" in reason for reason in dead)
    assert any("not msgpack" in reason for reason in dead)
    assert redis_client.xlen(stream) == 0  # every entry acknowledged


def test_a_goodbye_with_tasks_still_running_loses_only_those():
    write_heartbeats([beat()], now=at(T0))
    abandoned = started("w1@h", T0 + 1)  # a cold shutdown ends it
    elsewhere = started("w1@h", T0 + 2)  # not listed: its end may still arrive
    write_heartbeats([beat(goodbye=True, running=(abandoned,), running_count=1)], now=at(T0 + 5))
    states = dict(TaskRun.objects.values_list("task_id", "state"))
    assert (states[abandoned], states[elsewhere]) == ("LOST", "STARTED")
    assert Worker.objects.get().status == Worker.Status.OFFLINE


def test_a_hostile_heartbeat_is_stored_bounded_on_the_monitors_clock():
    from tasktrail.heartbeat import decode_heartbeat

    body = msgpack.unpackb(encode_heartbeat(beat())[ENTRY_FIELD], raw=False)
    body.update(
        hostname="h" * 255,
        ts=32_000_000_000.0,  # year 2984: a clock far ahead
        started_at=31_000_000_000.0,
        app="a\r\n" * 500,
        release="\x00\x1b" + "r" * 1000,
        queues=["q" * 1000] * 100,
        running=[f"t{i}" for i in range(1000)],
        running_count=2**31 - 1,
        processed=2**62 - 1,
    )
    decoded = decode_heartbeat({ENTRY_FIELD: msgpack.packb(body)})
    write_heartbeats([decoded], now=at(T0))
    row = Worker.objects.get()
    assert row.last_heartbeat_at == at(T0) and row.started_at == at(T0)
    assert len(row.app_name) == 255 and "\n" not in row.app_name and "\r" not in row.app_name
    assert row.release == "r" * 255
    assert len(row.queues) == 1 and row.queues[0] == "q" * 255  # the same name once
    assert len(row.running) == 100 and row.running_count == 2**31 - 1
    assert row.processed == 2**62 - 1

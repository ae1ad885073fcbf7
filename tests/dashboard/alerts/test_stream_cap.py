"""The stream's length cap seen from the service: the task processes' writer trims and counts, the
monitor's check says it is behind before anything is dropped, and says how much was once it is."""

from __future__ import annotations

import time

import pytest
from django.conf import settings

from dashboard.alerts import rules
from dashboard.alerts.runner import CheckRunner
from dashboard.alerts.worker_probe import WorkersSeen
from dashboard.ingest.stream import GROUP
from dashboard.selectors.system import monitor_status
from tasktrail.events import make_event
from tasktrail.stream_writer import StreamWriter

pytestmark = pytest.mark.django_db


def write_entries(writer: StreamWriter, count: int) -> None:
    for i in range(count):
        writer.emit(make_event("received", f"t{i}", time.time()))
        assert writer.flush() is True  # one stream entry per flush


def monitor_verdict(runner: CheckRunner) -> rules.Verdict:
    verdict = runner.run_once().verdict(rules.MONITOR_LAG, rules.MONITOR_SUBJECT)
    assert verdict is not None
    return verdict


def test_the_monitor_is_behind_before_the_cap_drops_anything_then_says_how_much(redis_client):
    stream = settings.TASKTRAIL_STREAM
    redis_client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    writer = StreamWriter(settings.REDIS_URL, stream, flush_interval=60, max_entries=200)
    runner = CheckRunner(client=redis_client, probe=lambda: WorkersSeen(time.time(), {}))

    write_entries(writer, 60)  # the monitor is down: nothing is read
    assert monitor_verdict(runner).state == "ok"

    write_entries(writer, 50)  # 110 of 200, and nothing dropped yet
    behind = monitor_verdict(runner)
    assert behind.firing and "stream_full" in behind.fired
    assert "holds 110 entries, 55% of its cap" in behind.words
    assert redis_client.hget(stream + ":trimmed", "entries") is None
    assert monitor_status(redis_client).trimmed == 0

    write_entries(writer, 400)  # still down: past the cap the oldest go, counted
    trimmed = int(redis_client.hget(stream + ":trimmed", "entries") or 0)
    assert trimmed > 0 and trimmed + redis_client.xlen(stream) == 510
    dropped = monitor_verdict(runner)
    assert dropped.firing and f"{trimmed:,} entries dropped by the cap" in dropped.words
    assert dropped.figures["cap"] == 200  # the cap the writers published, not the setting
    status = monitor_status(redis_client)
    assert status.trimmed == trimmed
    assert (
        status.problem is not None and f"{trimmed:,} stream entries were dropped" in status.problem
    )
    writer.close()

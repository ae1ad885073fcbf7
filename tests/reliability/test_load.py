"""Load: four worker processes (two workers of two pool processes), one monitor process keeping up.

The monitor's lag is sampled while the tasks flow and printed with the throughput; the test asserts
on correctness only (zero lost rows, nothing left in the stream), never on timings.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field

import pytest
from django.conf import settings

from tests.reliability.conftest import (
    INCLUDE,
    assert_exactly_one_correct_row_each,
    backlog,
    finished_rows,
    progress,
    publish_ticks,
    report,
    sized,
    ticks_done,
    wait_for,
)

pytestmark = pytest.mark.integration


@dataclass
class LagSampler:
    """Samples the stream backlog (entries) and the age of its oldest entry (seconds)."""

    client: object
    every: float = 0.25
    max_entries: int = 0
    max_seconds: float = 0.0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> LagSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        stream = settings.TASKTRAIL_STREAM
        while not self._stop.wait(self.every):
            entries = self.client.xlen(stream)  # type: ignore[attr-defined]
            oldest = self.client.xrange(stream, count=1)  # type: ignore[attr-defined]
            age = time.time() - int(oldest[0][0].split(b"-")[0]) / 1000 if oldest else 0.0
            self.max_entries = max(self.max_entries, entries)
            self.max_seconds = max(self.max_seconds, age)
            self.samples += 1


@pytest.mark.timeout(1800)
@sized("tasks", 5_000, 50_000)
def test_four_worker_processes_and_one_monitor_lose_no_row(
    tasks, start_worker, start_monitor, redis_client
):
    for name in ("load-a", "load-b"):
        start_worker(name=name, include=INCLUDE)  # two pool processes each
    monitor = start_monitor(consumer="load-monitor")
    sampler = LagSampler(redis_client).start()
    try:
        began = time.monotonic()
        publish_ticks(tasks, "L")
        published = time.monotonic() - began
        wait_for(lambda: ticks_done(redis_client) == tasks, 120 + tasks / 20, "the workers")
        ran = time.monotonic() - began
        wait_for(
            lambda: finished_rows() == tasks and backlog(redis_client) == 0,
            120 + tasks / 50,
            "the monitor to catch up",
            explain=lambda: progress(redis_client, monitor),
        )
        recorded = time.monotonic() - began
    finally:
        sampler.stop()
    assert_exactly_one_correct_row_each(redis_client, "L", tasks)
    assert monitor.stop() == 0, monitor.log  # its last heartbeat has the final counts
    beat = json.loads(redis_client.hget(settings.TASKTRAIL_STREAM + ":monitors", "load-monitor"))
    report(
        f"load: {tasks} tasks, 4 worker processes: published in {published:.1f}s, run in "
        f"{ran:.1f}s ({tasks / ran:.0f} tasks/s), every row written {recorded:.1f}s after the "
        f"first publish ({tasks / recorded:.0f} tasks/s); monitor: {beat['events']} events in "
        f"{beat['entries']} entries, {beat['batches']} batches; max backlog "
        f"{sampler.max_entries} entries, oldest entry at most {sampler.max_seconds:.1f}s old "
        f"({sampler.samples} samples); 0 rows lost"
    )

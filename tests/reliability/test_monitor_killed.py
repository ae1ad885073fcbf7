"""The monitor killed with SIGKILL in the middle of a burst, then restarted: every task ends with
exactly one correct row and one attempt, and nothing stays pending in the consumer group."""

from __future__ import annotations

import signal
import time

import pytest

from tests.reliability.conftest import (
    INCLUDE,
    assert_exactly_one_correct_row_each,
    backlog,
    finished_rows,
    pending,
    progress,
    publish_ticks,
    report,
    sized,
    ticks_done,
    wait_for,
)

pytestmark = pytest.mark.integration


def kill_while_a_batch_is_in_hand(monitor, client, within: float) -> int:
    """SIGKILL the monitor as soon as it holds delivered, unacknowledged entries (mid-batch);
    after ``within`` seconds, kill it anyway. Returns the entries pending at the kill."""
    deadline = time.monotonic() + within
    while pending(client) == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    in_hand = pending(client)
    monitor.stop(signal.SIGKILL)
    return in_hand


@pytest.mark.timeout(1200)
@sized("tasks", 2_000, 20_000)
def test_monitor_killed_mid_burst_and_restarted_leaves_one_row_per_task(
    tasks, start_worker, start_monitor, redis_client
):
    start_worker(name="burst", include=INCLUDE)
    monitor = start_monitor(consumer="burst-monitor")
    started = time.monotonic()

    publish_ticks(tasks // 2, "K")
    wait_for(lambda: finished_rows() >= tasks // 8, 120 + tasks / 50, "the monitor writing rows")
    in_hand = kill_while_a_batch_is_in_hand(monitor, redis_client, within=10)
    time.sleep(1)  # a COMMIT the server had already received when the monitor died completes
    rows_at_kill = finished_rows()
    publish_ticks(tasks - tasks // 2, "K", first=tasks // 2)  # the burst goes on without a monitor
    wait_for(lambda: ticks_done(redis_client) == tasks, 120 + tasks / 20, "the workers")
    assert finished_rows() == rows_at_kill  # nobody wrote meanwhile: the events waited
    waiting = backlog(redis_client)

    restarted = start_monitor(consumer="burst-monitor")  # the same consumer: its pending first
    wait_for(
        lambda: finished_rows() == tasks and backlog(redis_client) == 0,
        120 + tasks / 50,
        "the restarted monitor to catch up",
        explain=lambda: progress(redis_client, restarted),
    )
    wait_for(lambda: pending(redis_client) == 0, 30, "the last acknowledgement")
    elapsed = time.monotonic() - started
    assert_exactly_one_correct_row_each(redis_client, "K", tasks)
    assert restarted.stop() == 0, restarted.log
    report(
        f"monitor SIGKILL: {tasks} tasks, killed with {in_hand} entries in hand and "
        f"{rows_at_kill} rows written, {waiting} entries waited in the stream; "
        f"all rows correct {elapsed:.1f}s after the first publish"
    )

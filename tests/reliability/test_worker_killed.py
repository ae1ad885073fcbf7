"""A worker killed with SIGKILL while running tasks: its heartbeats stop without a goodbye, the
monitor's alert checks mark it gone and those tasks LOST within the detection window (not STARTED
for ever), and the retry action accepts them."""

from __future__ import annotations

import json
import signal
import time

import pytest
from django.contrib.auth.models import Group, User

from dashboard.models import TaskRun, Worker
from dashboard.services import task_run_retry
from tests.reliability import tasks as rtasks
from tests.reliability.conftest import INCLUDE, report, wait_for

pytestmark = pytest.mark.integration

LOST_AFTER = 3  # worker_lost_seconds for this test (default 60)
CHECK_EVERY = 0.5  # TASKTRAIL_ALERT_CHECK_SECONDS (default 10)
BEAT_EVERY = "1"  # TASKTRAIL_HEARTBEAT_INTERVAL (default 5): several beats within LOST_AFTER


def states(ids: list[str]) -> dict[str, str]:
    return dict(TaskRun.objects.filter(task_id__in=ids).values_list("task_id", "state"))


@pytest.mark.timeout(300)
def test_worker_killed_running_tasks_become_lost_and_retryable(
    start_worker, start_monitor, redis_client
):
    beats = {"TASKTRAIL_HEARTBEAT_INTERVAL": BEAT_EVERY}
    doomed = start_worker(name="doomed", include=INCLUDE, env=beats)  # two pool processes
    monitor = start_monitor(
        consumer="lost-monitor",
        args=(),  # alert checks on, as in production
        env={
            "TASKTRAIL_ALERT_CHECK_SECONDS": str(CHECK_EVERY),
            "TASKTRAIL_ALERTS": json.dumps({"worker_lost_seconds": LOST_AFTER}),
        },
    )
    running = [rtasks.hold.delay(f"L-{i}", 300).id for i in range(2)]
    wait_for(lambda: set(states(running).values()) == {"STARTED"}, 60, "both tasks running")

    doomed.stop(signal.SIGKILL)  # the whole process group: main process and pool
    killed = time.monotonic()
    window = LOST_AFTER + 10 * CHECK_EVERY + 5  # threshold, a few check cycles, a late beat
    wait_for(
        lambda: set(states(running).values()) == {"LOST"},
        window,
        "the tasks marked LOST",
        explain=monitor.describe,
    )
    detected = time.monotonic() - killed
    worker = TaskRun.objects.get(task_id=running[0]).worker
    # The incident (and its mail, console backend): its log line may follow the rows' LOST write.
    wait_for(lambda: f"worker {worker} gone" in monitor.log, 10, "the worker-gone incident's line")

    operator = User.objects.create_user("lost-operator")
    operator.groups.add(Group.objects.get(name="operator"))
    redis_client.set(rtasks.release_key(), 1)  # the retries finish at once
    new_ids = []
    for task_id in running:
        result = task_run_retry(user=operator, task_id=task_id, reason="worker lost")
        assert result.done == [task_id], result.refused
        new_ids.append(result.new_task_ids[task_id])
    start_worker(name="rescue", include=INCLUDE, env=beats)
    wait_for(lambda: set(states(new_ids).values()) == {"SUCCESS"}, 60, "the retries to succeed")
    assert set(
        TaskRun.objects.filter(task_id__in=new_ids).values_list("retry_of", flat=True)
    ) == set(running)
    assert Worker.objects.get(hostname=worker).status == "gone"
    report(
        f"worker SIGKILL: 2 running tasks LOST {detected:.1f}s after the kill "
        f"(heartbeats every {BEAT_EVERY}s, worker_lost_seconds={LOST_AFTER}, checks every "
        f"{CHECK_EVERY}s); both retried"
    )

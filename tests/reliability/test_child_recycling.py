"""Pool processes recycled by ``--max-tasks-per-child``: no event and no span lost.

A recycled pool process leaves with ``os._exit``: only the flushes on ``worker_process_shutdown``
(the recorder's buffer, the span processor's queue) deliver what it held. The span processor's
timer is set to a minute, so every span must come through those flushes (or a full export batch).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dashboard.models import TaskAttempt
from tests.reliability import tasks as rtasks
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
from tests.tracing.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.integration

PER_CHILD = 10


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    started = OtlpReceiver().start()
    yield started
    started.stop()


@pytest.mark.timeout(900)
@sized("tasks", 200, 2_000)
def test_recycled_pool_processes_lose_no_event_nor_span(
    tasks, receiver, start_worker, start_monitor, redis_client
):
    worker = start_worker(
        name="recycled",
        include=INCLUDE,
        extra_args=(f"--max-tasks-per-child={PER_CHILD}",),
        env={
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "60000",  # only the exit flush (or a full batch) delivers
            "OTEL_TRACES_SAMPLER": "parentbased_always_on",
            "OTEL_SERVICE_NAME": "",
            "OTEL_SDK_DISABLED": "false",
        },
    )
    monitor = start_monitor(consumer="recycled-monitor")
    publish_ticks(tasks, "C")
    wait_for(lambda: ticks_done(redis_client) == tasks, 60 + tasks / 5, "the workers")
    # Warm shutdown: the last pool processes leave too. On a loaded machine the pool's exit flushes
    # can take a while; a worker killed after the wait would lose what it held, so wait long and
    # say so if it came to that.
    assert worker.stop(timeout=180) == 0, worker.log
    run_span = f"run/{rtasks.tick.name}"
    spans = receiver.wait_for(
        lambda found: (
            [s for s in found if s.name == run_span]
            if sum(s.name == run_span for s in found) >= tasks
            else None
        ),
        30,
        f"{tasks} run spans",
    )
    wait_for(
        lambda: finished_rows() == tasks and backlog(redis_client) == 0,
        60 + tasks / 50,
        "every row",
        explain=lambda: progress(redis_client, monitor),
    )
    assert_exactly_one_correct_row_each(redis_client, "C", tasks)
    recorded = set(TaskAttempt.objects.values_list("span_id", flat=True))
    assert len(spans) == tasks
    assert recorded == {s.span_id for s in spans}  # each attempt's run span, exported once
    pool_processes = TaskAttempt.objects.values("pid").distinct().count()
    assert pool_processes >= tasks // PER_CHILD  # the pool processes were recycled
    report(
        f"max_tasks_per_child={PER_CHILD}: {tasks} tasks over {pool_processes} pool processes, "
        f"every row complete and all {len(spans)} run spans received"
    )

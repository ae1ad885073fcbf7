"""A task message whose headers hold what the event schema cannot: the worker process that runs
it, and the publisher, keep recording every task after it (the writer never wedges)."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from dashboard.models import TaskRun
from tests.integration.conftest import wait_until
from workers.tasks import send_invoice

pytestmark = pytest.mark.integration


def rows(task_ids: list[str]) -> list[TaskRun] | None:
    found = list(TaskRun.objects.filter(task_id__in=task_ids, finished_at__isnull=False))
    return found if len(found) == len(task_ids) else None


def test_hostile_header_values_never_stop_a_worker_process_from_recording(
    start_worker, redis_client
):
    queue = f"hostile-{uuid.uuid4().hex[:8]}"
    # One pool process: the hostile tasks and the ones after them run in the same process.
    worker = start_worker(queues=queue, name=queue, extra_args=("-c", "1"))
    hostile = [
        {"traceparent": 2**70},  # msgpack packs 64 bits: this wedged the writer for good
        {"traceparent": "00-\udce9", "parent_id": "p\udce9"},  # lone surrogates
        {"traceparent": uuid.uuid4(), "root_id": Decimal("1.5")},  # kombu's JSON keeps the types
    ]
    bad = [
        send_invoice.apply_async((3000 + i,), queue=queue, headers=headers).id
        for i, headers in enumerate(hostile)
    ]
    good = [send_invoice.apply_async((3100 + i,), queue=queue).id for i in range(3)]

    finished = wait_until(redis_client, lambda: rows(bad + good), timeout=60, what="all rows")

    by_id = {row.task_id: row for row in finished}
    for task_id in bad + good:
        row = by_id[task_id]
        assert row.state == "SUCCESS", task_id
        # published (this process), received (the worker), started and succeeded (its pool)
        assert row.published_at and row.received_at and row.started_at, task_id
    assert by_id[bad[1]].parent_id == "p\\udce9"  # escaped the same way by every process
    worker.stop()
    assert "Redis did not take" not in worker.log
    assert "cannot be packed" not in worker.log  # fitted to the schema before packing
    assert "did not fit the event schema" in worker.log


def test_a_signing_worker_is_recorded_by_a_monitor_that_requires_signatures(
    start_worker, redis_client
):
    import time

    from django.conf import settings

    from dashboard.ingest.monitor import Monitor
    from dashboard.ingest.stream import StreamConsumer
    from tasktrail import recorder
    from tasktrail.signing import parse_keys

    keys = "new:" + "n" * 24 + ",old:" + "o" * 24
    queue = f"signed-{uuid.uuid4().hex[:8]}"
    worker = start_worker(queues=queue, name=queue, env={"TASKTRAIL_EVENT_KEY": keys})
    task_ids = [send_invoice.apply_async((3200 + i,), queue=queue).id for i in range(3)]
    recorder.flush()  # this process's publish events: unsigned, so refused
    monitor = Monitor(
        StreamConsumer(redis_client, settings.TASKTRAIL_STREAM, consumer="signed"),
        event_keys=parse_keys(keys),
    )
    deadline = time.monotonic() + 60
    while rows(task_ids) is None and time.monotonic() < deadline:
        monitor.run(drain=True)
        time.sleep(0.2)
    assert [row.state for row in rows(task_ids) or []] == ["SUCCESS"] * 3
    assert all(row.started_at and row.published_at is None for row in rows(task_ids) or [])
    assert monitor.stats.unsigned >= 1  # the publisher's entries
    worker.stop()
    assert "n" * 24 not in worker.log

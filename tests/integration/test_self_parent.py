"""A task Celery itself retried is not its own parent, end to end with a real worker."""

from __future__ import annotations

import pytest

from dashboard.models import TaskRun
from dashboard.selectors.tasks import task_detail
from tests.integration.conftest import wait_until
from workers.tasks import book_shipment

pytestmark = pytest.mark.integration


def test_autoretried_task_has_no_parent(worker, redis_client):
    result = book_shipment.delay("SHP-7", fail_times=1)
    row = wait_until(
        redis_client,
        lambda: TaskRun.objects.filter(task_id=result.id, state="SUCCESS").first(),
        timeout=60,
        what="shipment booked after one retry",
    )
    assert (row.retries, row.parent_id) == (1, None)
    detail = task_detail(task_id=result.id)
    assert detail is not None
    assert detail.parent is None

"""A task is never its own parent: Celery's own retry republishes the task from inside itself."""

from __future__ import annotations

import pytest

from dashboard.ingest.merge import fold
from dashboard.ingest.writer import write_events
from dashboard.models import TaskRun
from tests.conftest import event

T0 = 1_750_000_000.0


def retried_by_celery(task_id: str, parent_id: str | None) -> list[dict]:
    """As the recorder sees it: the first publish names the real parent (or none); the retry's
    message, published from inside the running task, names the task itself."""
    first = {"parent_id": parent_id} if parent_id else {}
    return [
        event("published", task_id, T0, name="shop.ship", published_at=T0, **first),
        event("started", task_id, T0 + 1, retries=0),
        event("retried", task_id, T0 + 2, retries=0, exc_type="Timeout", exc_message="slow"),
        event("published", task_id, T0 + 2, name="shop.ship", published_at=T0 + 2, retries=1,
              parent_id=task_id),
        event("started", task_id, T0 + 3, retries=1),
        event("succeeded", task_id, T0 + 4, retries=1, runtime=0.5),
    ]  # fmt: skip


def test_fold_of_a_celery_retry_without_parent_has_no_parent():
    folded = fold(retried_by_celery("b-task", None))
    assert folded.tasks["b-task"].get("parent_id") is None


def test_fold_of_a_celery_retry_keeps_the_real_parent_over_its_own_id():
    # "a-task" sorts before "z-parent": a MIN over both ids would pick the task's own id
    folded = fold(retried_by_celery("a-task", "z-parent"))
    assert folded.tasks["a-task"]["parent_id"] == "z-parent"


@pytest.mark.django_db
def test_stored_row_of_a_celery_retry_keeps_the_real_parent_across_batches():
    events = retried_by_celery("a-task-2", "z-parent-2")
    for one in events:  # one event per batch: the database's upsert does the join
        write_events([one])
    assert TaskRun.objects.get(task_id="a-task-2").parent_id == "z-parent-2"

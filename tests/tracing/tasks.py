"""Tasks the tracing tests run on a real worker (imported there with ``--include``)."""

from __future__ import annotations

from celery import Task, shared_task


@shared_task(bind=True, max_retries=3, tasktrail_input_id="ref")
def flaky_parent(self: Task, ref: str) -> str:
    """Fails its first attempt (a Celery retry, no countdown), then starts a child and succeeds."""
    if self.request.retries == 0:
        raise self.retry(exc=RuntimeError(f"first attempt for {ref} fails"), countdown=0)
    traced_child.delay(ref)
    return ref


@shared_task(tasktrail_input_id="ref")
def traced_child(ref: str) -> str:
    return ref.lower()

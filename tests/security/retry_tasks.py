"""Tasks of the retry tests' worker (``-I tests.security.retry_tasks``): one that declares it may be
retried, one that says nothing. Both fail, so each run leaves a task to retry."""

from __future__ import annotations

from celery import shared_task


@shared_task(tasktrail_retryable=True, tasktrail_input_id="ref")
def refund(ref: str) -> None:
    raise RuntimeError(f"refund {ref} declined")


@shared_task(tasktrail_input_id="ref")
def undeclared(ref: str) -> None:
    raise RuntimeError(f"undeclared {ref} failed")

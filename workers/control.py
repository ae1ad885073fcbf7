"""The only module that asks Celery to do something: publish a retry, revoke, terminate.

Called by ``dashboard.services`` after its permission and state checks have committed.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import redis
from celery import Celery

from workers import revocations
from workers.recorder import RETRY_OF_HEADER


def is_registered(app: Celery, name: str) -> bool:
    return name in app.tasks


def publish_retry(
    app: Celery,
    *,
    name: str,
    args: list[Any],
    kwargs: dict[str, Any],
    queue: str | None,
    retry_of: str,
    task_id: str | None = None,
) -> str:
    """Publish ``name`` again with the recorded arguments, as a new task id linked to the old."""
    new_id = task_id or str(uuid.uuid4())
    app.send_task(
        name,
        args=args,
        kwargs=kwargs,
        queue=queue or None,
        task_id=new_id,
        headers={RETRY_OF_HEADER: retry_of},
    )
    return new_id


def cancel(app: Celery, client: redis.Redis, task_ids: Sequence[str]) -> None:
    """Revoke tasks that have not started, and remember them for workers started later."""
    revocations.remember(client, task_ids)
    app.control.revoke(list(task_ids))


def terminate(app: Celery, task_id: str, signal: str = "SIGTERM") -> None:
    """Stop a running task: its pool process gets ``signal``."""
    app.control.revoke(task_id, terminate=True, signal=signal)

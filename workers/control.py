"""The only module that asks Celery to do something: publish a retry, revoke, terminate.

Called by ``dashboard.services`` after its permission and state checks have committed.

An operator's retry **links** to the original trace rather than continuing it: it is published
under a span of the operator's own request (so the retry and everything it causes share that
request's trace id) carrying an OpenTelemetry span link to the original task's last run span. See
the README ("Tracing") for why.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import redis
from celery import Celery
from opentelemetry import trace

from tasktrail import revocations
from tasktrail.recorder import RETRY_OF_HEADER
from tasktrail.tracing.context import TraceParent

_tracer = trace.get_tracer("tasktrail.control")


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
    original_trace: TraceParent | None = None,
) -> str:
    """Publish ``name`` again with the recorded arguments, as a new task id linked to the old.

    ``original_trace``: the old task's trace id, the span id of its last run span (zeros when none
    ran) and whether it was sampled; the retry's span links to it.
    """
    new_id = task_id or str(uuid.uuid4())
    with _tracer.start_as_current_span(
        f"operator_retry/{name}",
        kind=trace.SpanKind.INTERNAL,
        links=_links_to(original_trace, retry_of),
        attributes={
            "celery.task_name": name,
            "messaging.message.id": new_id,
            "tasktrail.retry_of": retry_of,
        },
    ):
        app.send_task(
            name,
            args=args,
            kwargs=kwargs,
            queue=queue or None,
            task_id=new_id,
            headers={RETRY_OF_HEADER: retry_of},
        )
    return new_id


def _links_to(original: TraceParent | None, retry_of: str) -> list[trace.Link]:
    if original is None:
        return []
    context = trace.SpanContext(
        trace_id=int(original.trace_id, 16),
        span_id=int(original.span_id, 16),
        is_remote=True,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED if original.sampled else 0),
    )
    # Attributes keep the link even without a span id (a task that never ran): the SDK drops a
    # link whose span context is invalid and that carries nothing else.
    return [
        trace.Link(context, {"tasktrail.link": "operator retry of", "tasktrail.task_id": retry_of})
    ]


def cancel(app: Celery, client: redis.Redis, task_ids: Sequence[str]) -> None:
    """Revoke tasks that have not started, and remember them for workers started later."""
    revocations.remember(client, task_ids)
    app.control.revoke(list(task_ids))


def terminate(app: Celery, task_id: str, signal: str = "SIGTERM") -> None:
    """Stop a running task: its pool process gets ``signal``."""
    app.control.revoke(task_id, terminate=True, signal=signal)

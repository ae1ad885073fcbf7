"""One trace from an operator's HTTP request through every attempt and child task, end to end.

How the spans are collected, and why:

- **Web side** (this process): Django's test client sends the request; spans go to an in-memory
  exporter (``tests/tracing/conftest.py``), exactly as the web process would export them.
- **Worker side**: a real ``celery worker`` with the prefork pool, the one production runs, started
  with only ``OTEL_*`` variables, so its pool processes set tracing up themselves in
  ``worker_process_init``. A worker is another process whose memory the test cannot read, so its
  spans travel the production path too: the OTLP/HTTP exporter, to a small receiver this test runs
  on loopback (``tests/tracing/otlp_receiver.py``). An in-process ``start_worker(pool="solo")``
  would share the test's provider and hide what matters here: set-up after the fork and the flush
  when a pool process leaves.
- The worker runs with ``--max-tasks-per-child=1`` and a batch delay of 60 s: every pool process
  is recycled after one task, and its spans can only reach the receiver within the test's deadline
  through the flush on ``worker_process_shutdown`` (the spans the instrumentation alone loses,
  opentelemetry-python-contrib#4916).

The request is an operator's retry of a recorded failure (the dashboard's own view that enqueues a
task). The task fails once (Celery retry), then starts a child. Asserted: one trace id across the
HTTP span, the producer spans, both attempts' run spans and the child's; the rows carry that trace
id; each attempt's span id is the id of its exported run span; the retry links to the original.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse
from opentelemetry import trace

from dashboard.ingest.writer import write_events
from dashboard.models import OperatorActionTarget, TaskAttempt, TaskRun
from tests.catalog import register_demo_tasks
from tests.conftest import event, new_task_id
from tests.integration.conftest import Worker, wait_until
from tests.tracing import tasks as ttasks
from tests.tracing.otlp_receiver import OtlpReceiver, ReceivedSpan

pytestmark = pytest.mark.integration

PARENT = ttasks.flaky_parent.name
CHILD = ttasks.traced_child.name
ORIGINAL_TRACE = "0af7651916cd43dd8448eb211c80319c"
ORIGINAL_RUN_SPAN = "b7ad6b7169203331"


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    started = OtlpReceiver().start()
    yield started
    started.stop()


@pytest.fixture
def traced_worker(
    receiver: OtlpReceiver, redis_client: Any, transactional_db: Any
) -> Iterator[Worker]:
    worker = Worker(
        name="traced",
        include="tests.integration.tasks,tests.tracing.tasks",
        extra_args=("--max-tasks-per-child=1",),
        env={
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "60000",  # only the exit flush delivers in time
            "OTEL_TRACES_SAMPLER": "parentbased_always_on",
            "OTEL_SERVICE_NAME": "",
            "OTEL_SDK_DISABLED": "false",
        },
    ).start()
    yield worker
    worker.stop()


def operator_client(client: Any) -> Any:
    user = User.objects.create_user("trace-operator")
    user.groups.add(Group.objects.get(name="operator"))
    client.force_login(user)
    return client


def record_original_failure() -> str:
    """A failure recorded earlier, in another trace, with the arguments kept for a retry."""
    task_id, t0 = new_task_id(), time.time() - 60
    traceparent = f"00-{ORIGINAL_TRACE}-00f067aa0ba902b7-01"
    write_events(
        [
            event(
                "published",
                task_id,
                t0,
                name=PARENT,
                queue="default",
                args='["ORD-7"]',
                kwargs="{}",
                retries=0,
                published_at=t0,
                traceparent=traceparent,
            ),
            event(
                "started",
                task_id,
                t0 + 1,
                retries=0,
                hostname="w@old",
                pid=1,
                traceparent=traceparent,
            ),
            event(
                "failed",
                task_id,
                t0 + 2,
                retries=0,
                hostname="w@old",
                pid=1,
                exc_type="RuntimeError",
                exc_message="broken",
                span_id=ORIGINAL_RUN_SPAN,
            ),
        ]
    )
    return task_id


def by_name(spans: list[ReceivedSpan], name: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.name == name]


def worker_spans_complete(spans: list[ReceivedSpan]) -> bool:
    return (
        len(by_name(spans, f"run/{PARENT}")) == 2
        and len(by_name(spans, f"run/{CHILD}")) == 1
        and len(by_name(spans, f"apply_async/{PARENT}")) == 1
        and len(by_name(spans, f"apply_async/{CHILD}")) == 1
    )


def test_one_trace_from_the_request_through_retries_and_a_child(
    spans, traced_worker, receiver, redis_client, client
):
    original = record_original_failure()
    register_demo_tasks()  # as the worker reports them (its report is on the stream, not read yet)
    response = operator_client(client).post(
        reverse("task-action", args=[original, "retry"]), {"reason": "upstream fixed"}
    )
    assert response.status_code == 302
    new_id = OperatorActionTarget.objects.get(task_id=original).new_task_id
    assert new_id

    # -- the web side: HTTP span -> operator retry span -> producer span, one trace
    web = {s.name: s for s in spans.get_finished_spans()}
    http = next(s for s in web.values() if s.kind == trace.SpanKind.SERVER)
    retry = web[f"operator_retry/{PARENT}"]
    publish = web[f"apply_async/{PARENT}"]
    trace_id = format(http.context.trace_id, "032x")
    assert retry.parent.span_id == http.context.span_id
    assert publish.parent.span_id == retry.context.span_id
    assert {format(s.context.trace_id, "032x") for s in (http, retry, publish)} == {trace_id}
    [link] = retry.links  # linked to the original, not continuing it
    assert format(link.context.trace_id, "032x") == ORIGINAL_TRACE
    assert format(link.context.span_id, "016x") == ORIGINAL_RUN_SPAN
    assert trace.get_current_span() is trace.INVALID_SPAN  # nothing left current by the request

    # -- the rows
    child = wait_until(
        redis_client,
        lambda: TaskRun.objects.filter(parent_id=new_id, name=CHILD, state="SUCCESS").first(),
        timeout=60,
        what="the child task to succeed",
    )
    retried = wait_until(
        redis_client,
        lambda: TaskRun.objects.filter(task_id=new_id, state="SUCCESS").first(),
        what="the retried task to succeed",
    )
    assert (retried.trace_id, retried.trace_sampled, retried.retries) == (trace_id, True, 1)
    assert (child.trace_id, child.trace_sampled) == (trace_id, True)
    assert TaskRun.objects.get(task_id=original).trace_id == ORIGINAL_TRACE  # untouched

    # -- the worker side: flushed by each recycled pool process, before the worker stops
    received = receiver.wait_for(
        lambda got: got if worker_spans_complete(got) else None,
        timeout=30,
        what="the worker's spans (flushed when each pool process is recycled)",
    )
    assert traced_worker.process is not None and traced_worker.process.poll() is None
    worker_side = [s for s in received if s.service == "tasktrail-worker"]
    assert {s.trace_id for s in worker_side} == {trace_id}
    [first_run, second_run] = sorted(
        by_name(worker_side, f"run/{PARENT}"), key=lambda s: s.attributes.get("celery.retries", 0)
    )
    [retry_publish] = by_name(worker_side, f"apply_async/{PARENT}")
    [child_publish] = by_name(worker_side, f"apply_async/{CHILD}")
    [child_run] = by_name(worker_side, f"run/{CHILD}")
    web_publish_id = format(publish.context.span_id, "016x")
    assert first_run.parent_span_id == web_publish_id
    assert retry_publish.parent_span_id == first_run.span_id
    assert second_run.parent_span_id == retry_publish.span_id
    assert child_publish.parent_span_id == second_run.span_id
    assert child_run.parent_span_id == child_publish.span_id
    assert (first_run.kind, retry_publish.kind) == ("CONSUMER", "PRODUCER")

    # -- each attempt's span id is its exported run span
    attempts = dict(TaskAttempt.objects.filter(task_id=new_id).values_list("attempt", "span_id"))
    assert attempts == {0: first_run.span_id, 1: second_run.span_id}
    assert TaskAttempt.objects.get(task_id=child.task_id, attempt=0).span_id == child_run.span_id

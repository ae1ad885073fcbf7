"""The run span id on the recorder's finish events, whichever receiver runs first; eager mode."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from django.conf import settings
from opentelemetry import trace
from opentelemetry.instrumentation.celery import utils as instrumentation

from tasktrail import recorder
from tasktrail.events import decode_entry
from tasktrail.tracing.context import run_span_id
from workers.tasks import send_invoice

TASK = send_invoice._get_current_object()


def recorded(client, task_id):
    recorder.flush()
    events = []
    for _, fields in client.xrange(settings.TASKTRAIL_STREAM):
        events += [e for e in decode_entry(fields)[0] if e["task_id"] == task_id]
    return events


@contextmanager
def running(task_id: str, span, *, kept_by_instrumentation: bool):
    """What a worker has while the task runs: its request, and the run span (kept per task id by
    the instrumentation's prerun, or just current when another instrumentation made it)."""
    TASK.push_request(id=task_id, retries=0, hostname="w@test")
    try:
        if kept_by_instrumentation:
            instrumentation.attach_context(TASK, task_id, span, None, None)
            yield
        else:
            with trace.use_span(span):
                yield
    finally:
        instrumentation.detach_context(TASK, task_id)
        TASK.pop_request()


@pytest.mark.parametrize("kept", [True, False])
def test_success_failure_and_retry_events_carry_the_run_span_id(spans, redis_client, kept):
    tracer = trace.get_tracer("test")
    run = tracer.start_span("run/workers.tasks.send_invoice")
    expected = format(run.get_span_context().span_id, "016x")
    other = tracer.start_span("left current by the task body")
    with running("span-ok", run, kept_by_instrumentation=kept):
        if kept:  # the kept run span wins over whatever the task left current
            with trace.use_span(other):
                recorder.on_success(sender=TASK)
                recorder.on_retry(sender=TASK, request=TASK.request, reason=ValueError("again"))
                recorder.on_failure(sender=TASK, task_id="span-ok", exception=ValueError("x"))
        else:
            recorder.on_success(sender=TASK)
            recorder.on_retry(sender=TASK, request=TASK.request, reason=ValueError("again"))
            recorder.on_failure(sender=TASK, task_id="span-ok", exception=ValueError("x"))
    run.end()
    other.end()
    events = {e["kind"]: e for e in recorded(redis_client, "span-ok")}
    kinds = ("succeeded", "retried", "failed")
    assert {k: events[k].get("span_id") for k in kinds} == dict.fromkeys(kinds, expected)


def test_no_span_id_when_unsampled_or_untraced(spans):
    unsampled = trace.NonRecordingSpan(
        trace.SpanContext(0x1, 0x2, is_remote=False, trace_flags=trace.TraceFlags(0))
    )
    with running("span-unsampled", unsampled, kept_by_instrumentation=True):
        assert run_span_id(TASK, "span-unsampled") is None
    assert run_span_id(TASK, "no-such-task") is None  # nothing current, nothing kept
    assert run_span_id(object(), "x") is None


def test_eager_mode_runs_under_the_caller_and_records_nothing(spans, redis_client, settings):
    """Eager (``apply``/``task_always_eager``) sends no message, so nothing is propagated in
    headers and the recorder records nothing; the run span simply nests under the caller's span."""
    with trace.get_tracer("test").start_as_current_span("caller") as caller:
        result = send_invoice.apply((41,))
        assert trace.get_current_span() is caller
    assert result.successful()
    runs = [s for s in spans.get_finished_spans() if s.name.startswith("run/")]
    assert [s.parent.span_id for s in runs] == [caller.get_span_context().span_id]
    assert not [s for s in spans.get_finished_spans() if s.name.startswith("apply_async/")]
    assert recorded(redis_client, result.id) == []

"""A publish that raises (broker down) must not leave a span open and current.

The broker is really unreachable here: the publish goes to a connection on a loopback port nobody
listens on, so kombu raises the error a down broker gives, after the instrumentation has started
its producer span in ``before_task_publish``.
"""

from __future__ import annotations

import contextlib
import time

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse
from kombu.exceptions import OperationalError
from opentelemetry import trace
from opentelemetry.trace import StatusCode

from dashboard.ingest.writer import write_events
from dashboard.models import OperatorActionTarget, TaskRun
from tasktrail.tracing import publish_guard
from tests.catalog import register_demo_tasks
from tests.conftest import event, new_task_id
from workers.celery_app import app
from workers.tasks import send_invoice

DEAD_BROKER = "redis://127.0.0.1:1/0"
PRODUCER = "apply_async/workers.tasks.send_invoice"


@pytest.fixture
def broker_down(monkeypatch):
    """Every publish of the app goes to a broker that refuses connections."""
    connection = app.connection_for_write(DEAD_BROKER)

    @contextlib.contextmanager
    def dead_producer(producer=None):
        yield app.amqp.Producer(connection, auto_declare=False)

    monkeypatch.setattr(app, "producer_or_acquire", dead_producer)
    yield
    connection.release()


def test_failed_publish_ends_the_producer_span_and_restores_the_caller(spans, broker_down):
    assert publish_guard.installed()
    with trace.get_tracer("test").start_as_current_span("caller") as caller:
        with pytest.raises(OperationalError):
            send_invoice.apply_async((1,), retry=False)
        assert trace.get_current_span() is caller  # not the producer span
    assert trace.get_current_span() is trace.INVALID_SPAN
    finished = {s.name: s for s in spans.get_finished_spans()}
    producer = finished[PRODUCER]  # ended, so exported
    assert producer.parent is not None
    assert producer.parent.span_id == caller.get_span_context().span_id
    assert producer.status.status_code == StatusCode.ERROR
    assert [e.name for e in producer.events] == ["exception"]
    assert producer.events[0].attributes["exception.type"].endswith("OperationalError")
    # nothing left behind on the task object (the instrumentation keeps spans there per task id)
    entries = getattr(send_invoice._get_current_object(), "__otel_task_span", {})
    assert not [key for key in entries if key[1]]


def test_operator_retry_with_the_broker_down_fails_cleanly(
    spans, client, transactional_db, redis_client, settings
):
    settings.TASKTRAIL_BROKER_URL = DEAD_BROKER  # actions go to the shop's broker: down
    original, t0 = new_task_id(), time.time() - 10
    write_events(
        [
            event(
                "published",
                original,
                t0,
                name="workers.tasks.send_invoice",
                queue="default",
                args="[1237]",
                kwargs="{}",
                retries=0,
                published_at=t0,
            ),
            event("failed", original, t0 + 1, retries=0, exc_type="ValueError", exc_message="x"),
        ]
    )
    register_demo_tasks()  # as the demo's workers report them
    user = User.objects.create_user("down-operator")
    user.groups.add(Group.objects.get(name="operator"))
    client.force_login(user)

    response = client.post(reverse("task-action", args=[original, "retry"]), {"reason": "again"})

    assert response.status_code == 302  # the page reports the failure; no server error
    target = OperatorActionTarget.objects.get(task_id=original)
    assert target.outcome == "failed" and "publish failed" in target.message
    assert TaskRun.objects.get(task_id=original).retried_as is None  # free to try again
    assert trace.get_current_span() is trace.INVALID_SPAN
    finished = {s.name: s for s in spans.get_finished_spans()}
    http = next(s for s in finished.values() if s.kind == trace.SpanKind.SERVER)
    retry = finished["operator_retry/workers.tasks.send_invoice"]
    producer = finished[PRODUCER]
    assert producer.parent.span_id == retry.context.span_id
    assert retry.parent.span_id == http.context.span_id
    assert producer.status.status_code == retry.status.status_code == StatusCode.ERROR
    assert http.status.status_code != StatusCode.ERROR  # the request itself succeeded
    assert len({s.context.trace_id for s in (http, retry, producer)}) == 1

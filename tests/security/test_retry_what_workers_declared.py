"""An attacker who can write the event stream forges a failed task; an operator clicks Retry. Only
what the shop's workers declared may run: real worker processes report their catalog, a real
monitor writes it and the forged events, the operator acts through the views, and the broker is
read for what was sent."""

from __future__ import annotations

import html
import json
import re
import time

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from dashboard.models import OperatorAction, RegisteredTask, TaskRun
from tasktrail.events import encode_batch, make_event
from tests.conftest import new_task_id
from tests.integration.conftest import Worker, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
INCLUDE = "tests.integration.tasks,tests.security.retry_tasks"


def operator_client() -> Client:
    user = User.objects.create_user(f"op-{new_task_id()}")
    user.groups.add(Group.objects.get(name="operator"))
    client = Client()
    client.force_login(user)
    return client


def forge(redis_client, *events) -> None:
    """XADD events as anyone who can write the stream can: no recorder, no worker."""
    redis_client.xadd(settings.TASKTRAIL_STREAM, encode_batch(list(events)))


def page_text(response) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", response.content.decode()))


def queued(redis_client, queue: str = "default") -> list[dict]:
    return [json.loads(m) for m in redis_client.lrange(queue, 0, -1)]


def retry(client: Client, task_id: str):
    return client.post(
        reverse("task-action", args=[task_id, "retry"]), {"reason": "customer asked"}, follow=True
    )


@pytest.fixture
def shop_worker(redis_client, transactional_db):
    worker = Worker(include=INCLUDE, queues="default", name="retry-guard",
                    env={"TASKTRAIL_CATALOG_INTERVAL": "1"}).start()  # fmt: skip
    try:
        # its catalog, as the monitor writes it: Celery's built-ins are in it too
        wait_until(
            redis_client,
            lambda: RegisteredTask.objects.filter(
                name="tests.security.retry_tasks.refund"
            ).exists(),
            what="the worker's catalog",
        )
        yield worker
    finally:
        worker.stop()


def test_a_forged_builtin_wrapping_an_opted_out_task_is_refused(shop_worker, redis_client):
    assert RegisteredTask.objects.filter(name="celery.starmap").exists()
    assert not RegisteredTask.objects.get(name="workers.tasks.charge_card").retryable
    forged = new_task_id()
    callback = {"task": "workers.tasks.charge_card", "args": [], "kwargs": {}, "options": {},
                "subtask_type": None, "immutable": False}  # fmt: skip
    forge(
        redis_client,
        make_event(
            "failed", forged, time.time(), name="celery.starmap", queue="default",
            args=json.dumps([callback, [["PAY-1", 100_00, "tok_attacker"]]]), kwargs="{}",
            arg_names="card_token,card_token", exc_type="PaymentDeclined",
            exc_message="card declined", retries=0,
        ),
    )  # fmt: skip
    wait_until(redis_client, lambda: TaskRun.objects.filter(task_id=forged).exists(), what="row")
    client = operator_client()
    page = page_text(client.get(reverse("task-detail", args=[forged])))
    assert "Retry is not available: celery.starmap is one of Celery's built-in tasks" in page
    answer = retry(client, forged)
    assert answer.status_code == 200
    assert "celery.starmap is one of Celery's built-in tasks" in page_text(answer)
    assert OperatorAction.objects.get().outcome == "refused"
    assert TaskRun.objects.get(task_id=forged).retried_as is None
    assert queued(redis_client) == []  # nothing reached the broker


def test_a_name_no_worker_reported_is_refused(shop_worker, redis_client):
    forged = new_task_id()
    forge(redis_client, make_event("failed", forged, time.time(), name="shop.wire_money",
                                   queue="default", args='["acct-1", 1000000]', kwargs="{}",
                                   exc_type="X", retries=0))  # fmt: skip
    wait_until(redis_client, lambda: TaskRun.objects.filter(task_id=forged).exists(), what="row")
    answer = retry(operator_client(), forged)
    assert "no recent worker of this shop has registered shop.wire_money" in page_text(answer)
    assert queued(redis_client) == [] and TaskRun.objects.get(task_id=forged).retried_as is None


def test_a_task_with_a_non_hex_span_id_is_retried_and_runs(shop_worker, redis_client):
    task_id, now = new_task_id(), time.time()
    name = "tests.integration.tasks.explode"
    forge(
        redis_client,
        make_event("published", task_id, now, name=name, queue="default", args='["R-1", "boom"]',
                   kwargs="{}", published_at=now, traceparent=f"00-{TRACE}-00f067aa0ba902b7-01"),
        make_event("started", task_id, now + 0.1, retries=0, hostname="w@h",
                   span_id="not-hex-span!!!!"),
        make_event("failed", task_id, now + 0.2, retries=0, exc_type="RuntimeError",
                   exc_message="boom"),
    )  # fmt: skip
    wait_until(redis_client, lambda: TaskRun.objects.filter(task_id=task_id, state="FAILURE")
               .exists(), what="the forged failure")  # fmt: skip
    answer = retry(operator_client(), task_id)
    assert "Retrying 1 task." in page_text(answer)
    new_id = TaskRun.objects.get(task_id=task_id).retried_as
    assert new_id and OperatorAction.objects.get().outcome == "done"
    ran = wait_until(
        redis_client,
        lambda: TaskRun.objects.filter(task_id=new_id, finished_at__isnull=False).first(),
        what="the retry run by the worker",
    )
    assert ran.retry_of == task_id and ran.worker.startswith("retry-guard@")
    assert (ran.state, ran.exc_message) == ("FAILURE", "boom")


def test_declared_mode_retries_only_what_opted_in(shop_worker, redis_client, settings):
    from tests.security.retry_tasks import refund, undeclared

    settings.TASKTRAIL_RETRY = "declared"
    rows = {r.name: r for r in RegisteredTask.objects.filter(name__startswith="tests.security")}
    assert rows["tests.security.retry_tasks.refund"].declared_retryable is True
    assert rows["tests.security.retry_tasks.undeclared"].declared_retryable is False
    silent, opted_in = undeclared.delay("U-1").id, refund.delay("R-1").id
    for task_id in (silent, opted_in):
        wait_until(redis_client, lambda t=task_id: TaskRun.objects.filter(task_id=t,
                   state="FAILURE").exists(), what="the failure")  # fmt: skip
    client = operator_client()
    refused = retry(client, silent)
    assert "does not declare tasktrail_retryable = True" in page_text(refused)
    assert TaskRun.objects.get(task_id=silent).retried_as is None
    done = retry(client, opted_in)
    assert "Retrying 1 task." in page_text(done)
    new_id = TaskRun.objects.get(task_id=opted_in).retried_as
    ran = wait_until(
        redis_client,
        lambda: TaskRun.objects.filter(task_id=new_id, finished_at__isnull=False).first(),
        what="the opted-in retry run by the worker",
    )
    assert ran.exc_message == "refund R-1 declined" and ran.retry_of == opted_in

"""Operator actions when the shop's broker cannot be reached: audited as failed with the reason
(its password masked), the task rows left as they were, a bulk action saying how far it got."""

from __future__ import annotations

import json
import logging
import socket
import uuid
from collections.abc import Iterator

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import Group, User

from dashboard.ingest.writer import write_events
from dashboard.models import OperatorAction, OperatorActionTarget, TaskRun
from dashboard.services import task_run_cancel, task_run_retry, task_runs_bulk
from tasktrail import revocations
from tests.catalog import register_task
from tests.conftest import event, new_task_id
from tests.integration.tcp_proxy import TcpProxy

pytestmark = pytest.mark.django_db(transaction=True)

T0 = 1_750_000_000.0
TASK = "shopctl.touch"
SECRET = "s3cret-pw"


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that takes connections and never answers: a broker that hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    yield listener.getsockname()[1]
    listener.close()


@pytest.fixture
def queue() -> Iterator[str]:
    name = f"ctl-{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(name)
    client.close()


@pytest.fixture
def stream() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


def operator() -> User:
    user = User.objects.create_user(f"operator-{new_task_id()}")
    user.groups.add(Group.objects.get(name="operator"))
    return User.objects.get(pk=user.pk)


def failed_tasks(queue: str, count: int = 1) -> list[str]:
    register_task(TASK, queue=queue)
    ids = [new_task_id() for _ in range(count)]
    fields = {"name": TASK, "queue": queue, "args": '["/tmp/x", "y"]', "kwargs": "{}",
              "published_at": T0}  # fmt: skip
    write_events(
        [event("published", t, T0, **fields) for t in ids]
        + [event("failed", t, T0 + 1, exc_type="OSError", exc_message="disk full") for t in ids]
    )
    return ids


def unreachable_urls(port: int) -> dict[str, str]:
    return {
        "redis refused": f"redis://:{SECRET}@127.0.0.1:1/0",
        "amqp refused": f"amqp://guest:{SECRET}@127.0.0.1:1//",
        "amqp silent": f"amqp://guest:{SECRET}@127.0.0.1:{port}//",
        "redis silent": f"redis://:{SECRET}@127.0.0.1:{port}/0",
        # A cluster's failover list: each URL's password is masked, not only the first's.
        "amqp failover": f"amqp://guest:{SECRET}@127.0.0.1:1//;amqp://guest:{SECRET}2@127.0.0.1:2//",
    }


@pytest.mark.parametrize(
    "broker", ["redis refused", "amqp refused", "amqp silent", "redis silent", "amqp failover"]
)
def test_retry_with_the_broker_unreachable_fails_with_a_masked_reason_and_can_be_tried_again(
    broker, settings, queue, silent_port, caplog
):
    settings.TASKTRAIL_BROKER_URL = unreachable_urls(silent_port)[broker]
    [old] = failed_tasks(queue)
    with caplog.at_level(logging.WARNING):
        result = task_run_retry(user=operator(), task_id=old, reason="disk cleaned")
    action = OperatorAction.objects.get()
    assert action.outcome == "failed"
    assert "unreachable" in action.message and ":**@127.0.0.1" in action.message
    target = OperatorActionTarget.objects.get()
    assert (target.outcome, target.new_task_id) == ("failed", None)
    assert "unreachable" in target.message
    assert (result.done, result.new_task_ids, list(result.failed)) == ([], {}, [old])
    assert TaskRun.objects.get(task_id=old).retried_as is None
    assert "unreachable" in caplog.text
    for text in (action.message, target.message, caplog.text):
        assert SECRET not in text

    settings.TASKTRAIL_BROKER_URL = settings.REDIS_URL  # the broker is back: retry again
    again = task_run_retry(user=operator(), task_id=old, reason="disk cleaned, broker back")
    assert again.done == [old] and again.action.outcome == "done"
    assert TaskRun.objects.get(task_id=old).retried_as == again.new_task_ids[old]


def test_cancel_with_the_broker_unreachable_says_it_was_only_remembered(settings, queue, stream):
    settings.TASKTRAIL_BROKER_URL = f"amqp://guest:{SECRET}@127.0.0.1:1//"
    task_id = new_task_id()
    write_events([event("published", task_id, T0, name=TASK, queue=queue, published_at=T0)])
    try:
        result = task_run_cancel(user=operator(), task_id=task_id, reason="order cancelled")
        action = OperatorAction.objects.get()
        assert action.outcome == "failed" and result.done == []
        assert "running workers were not told" in action.message
        assert "remembered for workers started later" in action.message
        assert SECRET not in action.message
        assert task_id in revocations.remembered(stream)  # workers started later will skip it
        assert TaskRun.objects.get(task_id=task_id).cancel_requested_at is None  # can be resent
    finally:
        stream.zrem(revocations.KEY, task_id)


def test_bulk_retry_when_the_broker_goes_away_midway_says_how_many_reached_it(
    settings, queue, stream, monkeypatch
):
    from workers import control

    host, port = (
        stream.connection_pool.connection_kwargs["host"],
        stream.connection_pool.connection_kwargs["port"],
    )
    db = stream.connection_pool.connection_kwargs.get("db", 0)
    proxy = TcpProxy(host, port).start()
    settings.TASKTRAIL_BROKER_URL = f"redis://127.0.0.1:{proxy.port}/{db}"
    ids = failed_tasks(queue, 5)
    publish, sent = control.publish_retry, []

    def broker_goes_away_after_two(**kwargs):
        if len(sent) == 2:
            proxy.cut()
        new_id = publish(**kwargs)
        sent.append(kwargs["retry_of"])
        return new_id

    monkeypatch.setattr(control, "publish_retry", broker_goes_away_after_two)
    try:
        result = task_runs_bulk(user=operator(), kind="retry", reason="x", task_ids=ids)
    finally:
        proxy.cut()
    action = OperatorAction.objects.get()
    assert action.outcome == "partial"
    assert "2 of 5 reached the broker; 3 failed" in action.message
    assert sorted(result.done) == sorted(sent) and len(sent) == 2
    outcomes = {t.task_id: (t.outcome, t.message) for t in OperatorActionTarget.objects.all()}
    failed = [t for t in ids if t not in sent]
    assert all(outcomes[t][0] == "done" for t in sent)
    assert all(outcomes[t][0] == "failed" for t in failed)
    assert sum(outcomes[t][1].startswith("not sent: ") for t in failed) == 2  # not even tried
    links = dict(TaskRun.objects.filter(task_id__in=ids).values_list("task_id", "retried_as"))
    assert {t: links[t] for t in sent} == {t: result.new_task_ids[t] for t in sent}
    assert all(links[t] is None for t in failed)
    queued = [json.loads(m)["headers"]["id"] for m in stream.lrange(queue, 0, -1)]
    assert sorted(queued) == sorted(result.new_task_ids.values())  # what reached it, and only that

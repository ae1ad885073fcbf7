"""The check's queues on the shop's broker: which queues (never the demo's on a shop's broker), the
oldest waiting task from the rows (ETA tasks not yet due left out), and a broker that cannot tell
a figure: the page says so and no rule fires or resolves on it."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import timezone

from dashboard.alerts import rules
from dashboard.alerts.queue_figures import (
    BrokerQueues,
    QueueAges,
    oldest_ages,
    recorded_queues,
    waiting_since,
)
from dashboard.alerts.redis_state import RedisTimer
from dashboard.alerts.runner import CheckRunner
from dashboard.models import AlertIncident, TaskRun, TaskState, Worker
from tests.catalog import register_task
from tests.dashboard.alerts.test_runner import THRESHOLDS, Clock, Probe, declare
from tests.dashboard.views.snapshots import write_snapshot
from workers.broker import QueueReading, UnknownReader, reader_for
from workers.broker_redis import PRIORITY_SEP

pytestmark = pytest.mark.django_db

T0 = 1_750_000_000.0


def at(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)


def pending(queue: str, published: float, eta: float | None = None, state: str = "PENDING") -> None:
    TaskRun.objects.create(
        task_id=f"t-{uuid.uuid4().hex}",
        name="shop.work",
        queue=queue,
        state=state,
        first_seen_at=at(published),
        updated_at=at(published),
        published_at=at(published),
        eta=None if eta is None else at(eta),
    )


def test_the_oldest_waiting_task_leaves_out_eta_tasks_not_yet_due():
    pending("orders", T0 - 300, eta=T0 + 600)  # a countdown not yet due: not waiting
    pending("orders", T0 - 200, eta=T0 - 100)  # due since 100 s: waiting since its publish
    pending("orders", T0 - 100)
    pending("orders", T0 - 1000, state=TaskState.RECEIVED)  # a worker has it
    pending("orders", T0 - 5000, state=TaskState.SUCCESS)
    pending("reports", T0 - 50)
    assert waiting_since(["orders", "reports", "empty"], at(T0)) == {
        "orders": T0 - 200,
        "reports": T0 - 50,
    }


def test_the_query_uses_the_partial_index_of_pending_rows():
    from django.db import connection

    pending("orders", T0 - 100)
    qs = (
        TaskRun.objects.filter(state=TaskState.PENDING, queue="orders", published_at__isnull=False)
        .order_by("published_at")
        .values_list("published_at", flat=True)[:1]
    )
    plan = qs.explain()
    if connection.vendor in ("sqlite", "postgresql"):
        assert "taskrun_queue_waiting" in plan, plan


def test_records_count_only_while_the_broker_does_not_say_the_queue_is_empty():
    since = T0 - 400
    stamped = QueueReading("q", depth=3, oldest_published=T0 - 30)
    assert oldest_ages(stamped, since, T0) == QueueAges(30.0, 400.0, 30.0)  # the stamp rules
    unstamped = QueueReading("q", depth=3)  # RabbitMQ: no stamp, the rows say
    assert oldest_ages(unstamped, since, T0).rules == 400.0
    purged = QueueReading("q", depth=0)  # the rows stay PENDING after a purge: not waiting
    assert oldest_ages(purged, since, T0).records is None
    unknown = QueueReading("q")  # SQS: shown, but no rule fires without a depth
    assert oldest_ages(unknown, since, T0).records == 400.0


def test_queue_names_come_from_the_catalog_workers_waiting_rows_and_the_setting(settings):
    settings.TASKTRAIL_QUEUES = ["always"]
    register_task("shop.bill", queue="billing")
    Worker.objects.create(
        hostname="w1@h",
        queues=["live", "w1@h.celery.pidbox"],
        first_seen_at=timezone.now(),
        last_heartbeat_at=timezone.now(),
    )
    Worker.objects.create(
        hostname="w2@h",
        status=Worker.Status.GONE,
        queues=["old"],
        first_seen_at=timezone.now(),
        last_heartbeat_at=timezone.now(),
    )
    pending("backlog", time_now := timezone.now().timestamp())
    assert time_now
    names = recorded_queues(timezone.now())
    assert {"billing", "live", "backlog"} <= names
    assert "old" not in names and not [n for n in names if n.endswith(".pidbox")]
    queues = BrokerQueues(UnknownReader("sqs://"))
    assert "always" in queues.names(T0, RedisTimer())


@pytest.fixture
def shop_prefix() -> Iterator[str]:
    prefix = f"shopq-{uuid.uuid4().hex[:8]}:"
    yield prefix
    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def test_a_shops_prefixed_redis_shows_its_queues_not_the_demos(redis_client, shop_prefix):
    # the demo's queues, unprefixed, on the same Redis; and the demo's settings name them too
    declare(redis_client, "default")
    declare(redis_client, "inventory")
    redis_client.lpush("default", "{}")
    assert settings.CELERY_TASK_DEFAULT_QUEUE == "default"
    # the shop's queue, under its prefix, with a priority sub-queue
    redis_client.sadd(
        f"{shop_prefix}_kombu.binding.orders", f"orders{PRIORITY_SEP}{PRIORITY_SEP}orders"
    )
    redis_client.lpush(f"{shop_prefix}orders", "{}")
    redis_client.lpush(f"{shop_prefix}orders{PRIORITY_SEP}9", "{}", "{}")

    queues = BrokerQueues(reader_for(settings.REDIS_URL, {"global_keyprefix": shop_prefix}))
    runner = CheckRunner(
        client=redis_client, probe=Probe({}), thresholds=THRESHOLDS, clock=Clock(T0),
        broker_queues=queues,
    )  # fmt: skip
    report = runner.run_once()
    subjects = {v.subject for v in report.verdicts if v.rule == rules.QUEUE_STUCK}
    assert subjects == {"orders"}
    verdict = report.verdict(rules.QUEUE_STUCK, "orders")
    assert verdict is not None and verdict.figures["depth"] == 3
    queues.close()


@pytest.fixture
def viewer_client(client):
    user = User.objects.create_user("queue-viewer")
    user.user_permissions.add(*Permission.objects.filter(codename="view_taskrun"))
    client.force_login(user)
    return client


def test_an_unknown_broker_fires_nothing_resolves_nothing_and_says_so(redis_client, viewer_client):
    pending("orders", T0 - 3600)  # an hour old in the rows: would be stuck on a known broker
    open_one = AlertIncident.objects.create(
        rule=rules.QUEUE_STUCK,
        subject="orders",
        summary="was stuck",
        opened_at=at(T0 - 60),
        checked_at=at(T0 - 60),
    )
    runner = CheckRunner(
        client=redis_client,
        probe=Probe({"w1@h": ("orders",)}),
        thresholds=THRESHOLDS,
        clock=Clock(T0),
        broker_queues=BrokerQueues(UnknownReader("sqs://AKIA:sqs-secret@")),
    )
    report = runner.run_once()
    verdict = report.verdict(rules.QUEUE_STUCK, "orders")
    assert verdict is not None
    assert (verdict.state, verdict.known, verdict.fired) == ("ok", False, ())
    assert verdict.words.startswith("depth unknown")
    assert not report.sync.opened and not report.sync.resolved
    open_one.refresh_from_db()
    assert open_one.resolved_at is None  # an unknown depth never resolves it either

    # the page, from the snapshot this check left (re-stamped as fresh)
    import json

    from dashboard import redis_keys

    snapshot = json.loads(redis_client.get(redis_keys.alert_snapshot(settings.TASKTRAIL_STREAM)))
    assert snapshot["queues"]["orders"]["records_oldest_age"] == 3600.0
    write_snapshot(redis_client, snapshot["queues"], age=1, broker=snapshot["broker"])
    body = viewer_client.get(reverse("queues")).content.decode()
    assert "unknown on sqs://" in body.lower()
    assert "no alert fires on a figure it cannot know" in body
    assert "qstate-ok" not in body  # not "ok": unknown
    assert "sqs-secret" not in body
    assert "1h 00m <span" in body and ">records<" in body  # the rows' age, marked as such


def test_on_rabbitmq_the_broker_counts_consumers_and_the_rows_age_the_backlog(
    redis_client, tmp_path
):
    from kombu import Connection

    from tests.workers.test_broker_amqp import RABBIT, publish, unreachable

    why = unreachable(RABBIT)
    if why:
        pytest.skip(f"RabbitMQ at {RABBIT} is not answering ({why})")
    queue = f"tt-check-{uuid.uuid4().hex[:10]}"
    try:
        publish(RABBIT, queue, 4, tmp_path)
        pending(queue, T0 - 400)  # what the rows say of the oldest of them
        queues = BrokerQueues(reader_for(RABBIT, {}))
        runner = CheckRunner(
            client=redis_client,
            # a stale answer from the workers says someone consumes it: the broker knows better
            probe=Probe({"w1@h": (queue,)}),
            thresholds=THRESHOLDS,
            clock=Clock(T0),
            broker_queues=queues,
        )
        report = runner.run_once()
        queues.close()
    finally:
        with Connection(RABBIT, connect_timeout=2) as conn:
            channel: Any = conn.channel()
            channel.queue_delete(queue)
            channel.exchange_delete(queue)
    verdict = report.verdict(rules.QUEUE_STUCK, queue)
    assert verdict is not None, "the rows named the queue, so the check read it"
    assert (verdict.figures["depth"], verdict.figures["consumers"]) == (4, 0)
    assert verdict.figures["oldest_age"] == 400.0
    assert verdict.state == "stuck" and "oldest" in verdict.fired
    assert report.broker["unknown"] == ["unacked", "idle_since", "oldest_published", "list"]
    assert report.queue_details[queue]["consumers_from"] == "broker"

"""A check cycle against the real broker and database, with a fake clock and a fake probe."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User

from dashboard import redis_keys
from dashboard.alerts import rules
from dashboard.alerts.checks import WorkersSeen
from dashboard.alerts.runner import CheckRunner, CycleReport
from dashboard.ingest.writer import write_events
from dashboard.models import AlertIncident, TaskRun
from dashboard.selectors.alerts import alert_snapshot
from dashboard.services import task_run_retry
from tests.conftest import event, new_task_id
from workers.broker import PRIORITY_SEP

pytestmark = pytest.mark.django_db

THRESHOLDS = rules.Thresholds(
    queue=rules.QueueThresholds(
        oldest_seconds=300, warning_oldest_seconds=60, no_consumer_seconds=60, no_progress_seconds=0
    ),
    task_max_runtime_seconds=3600,
    tasks={"shop.report": 60},
    worker_lost_seconds=60,
    monitor_lag_seconds=120,
    remind_seconds=1800,
)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Outbox:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []  # (rule, subject, kind)

    def __call__(self, incident: AlertIncident, kind: str, now: dt.datetime) -> int:
        self.sent.append((incident.rule, incident.subject, kind))
        return 1


class Probe:
    """The workers' answer, as the test says it; None: they could not be asked."""

    def __init__(self, queues: dict[str, tuple[str, ...]] | None) -> None:
        self.queues = queues

    def __call__(self) -> WorkersSeen | None:
        return None if self.queues is None else WorkersSeen(time.time(), self.queues)


def message(published: float | None) -> str:
    headers: dict[str, object] = {"id": new_task_id(), "task": "shop.report"}
    if published is not None:
        headers["tasktrail_published"] = published
    return json.dumps({"body": "", "headers": headers, "properties": {}})


def declare(client, queue: str) -> None:
    """What kombu writes when a queue is declared on the default exchange."""
    client.sadd(f"_kombu.binding.{queue}", f"{queue}{PRIORITY_SEP}{PRIORITY_SEP}{queue}")


@pytest.fixture
def make_runner(redis_client) -> Callable[..., tuple[CheckRunner, Clock, Outbox]]:
    def make(
        probe: Probe | None = None, clock: Clock | None = None, outbox: Outbox | None = None
    ) -> tuple[CheckRunner, Clock, Outbox]:
        clock, outbox = clock or Clock(), outbox or Outbox()
        runner = CheckRunner(
            client=redis_client,
            probe=probe or Probe({"w1@h": ("default", "inventory")}),
            thresholds=THRESHOLDS,
            clock=clock,
            send=outbox,
        )
        return runner, clock, outbox

    return make


def queue_verdict(report: CycleReport, name: str) -> rules.Verdict:
    verdict = report.verdict(rules.QUEUE_STUCK, name)
    assert verdict is not None, [v.subject for v in report.verdicts]
    return verdict


def test_no_consumer_warning_then_stuck_one_mail_across_a_restart_then_recovery(
    make_runner, redis_client
):
    declare(redis_client, "isolated")
    for _ in range(3):
        redis_client.lpush("isolated", message(time.time()))
    runner, clock, outbox = make_runner()
    first = runner.run_once()
    assert queue_verdict(first, "isolated").state == "warning"  # nobody consumes it, not for long
    assert queue_verdict(first, "default").state == "ok"
    clock.advance(61)
    stuck = queue_verdict(runner.run_once(), "isolated")
    assert stuck.state == "stuck" and stuck.fired == (rules.NO_CONSUMER,)
    assert stuck.words == "oldest message waiting 1m01s, 3 waiting, no consumer"
    assert outbox.sent == [(rules.QUEUE_STUCK, "isolated", "opened")]

    # the monitor restarts: a new runner, same Redis and database
    restarted, _, _ = make_runner(clock=clock, outbox=outbox)
    clock.advance(10)
    again = queue_verdict(restarted.run_once(), "isolated")
    assert again.figures["no_consumer_for"] == pytest.approx(71, abs=1)  # clock kept in Redis
    assert outbox.sent == [(rules.QUEUE_STUCK, "isolated", "opened")]
    assert AlertIncident.objects.filter(resolved_at__isnull=True).count() == 1

    redis_client.delete("isolated")  # drained
    clock.advance(10)
    assert queue_verdict(restarted.run_once(), "isolated").state == "ok"
    assert [kind for *_, kind in outbox.sent] == ["opened", "resolved"]
    assert redis_client.hgetall(redis_keys.alert_since(settings.TASKTRAIL_STREAM)) == {}


def test_priority_sub_queues_count_and_the_oldest_is_taken_across_them(make_runner, redis_client):
    declare(redis_client, "isolated")
    now = time.time()
    redis_client.lpush("isolated", message(now - 10))
    redis_client.lpush(f"isolated{PRIORITY_SEP}3", message(now - 400))
    redis_client.lpush(f"isolated{PRIORITY_SEP}9", message(now - 5))
    redis_client.lpush(f"isolated{PRIORITY_SEP}9", message(None))
    runner, _, _ = make_runner(probe=Probe({"w1@h": ("isolated",)}))
    verdict = queue_verdict(runner.run_once(), "isolated")
    assert verdict.figures["depth"] == 4
    assert verdict.figures["oldest_age"] == pytest.approx(400, abs=2)
    assert verdict.state == "stuck" and verdict.fired == ("oldest",)


def test_the_snapshot_the_pages_read(make_runner, redis_client):
    declare(redis_client, "isolated")
    redis_client.lpush("isolated", message(time.time() - 90))
    runner, _, _ = make_runner()
    report = runner.run_once()
    snapshot = alert_snapshot(redis_client)
    assert snapshot is not None and snapshot.workers == 1
    assert snapshot.queues["isolated"].state == "warning"
    assert snapshot.queues["default"].consumers == 1
    assert report.redis_round_trips == 3  # the queue list, one read, one write
    assert runner.run_once().redis_round_trips == 2  # the queue list is reused for 30 s


def test_when_the_workers_cannot_be_asked_an_open_incident_stays_open(make_runner, redis_client):
    declare(redis_client, "isolated")
    redis_client.lpush("isolated", message(time.time()))
    runner, clock, outbox = make_runner(probe=Probe({}))
    runner.run_once()
    clock.advance(61)
    runner.run_once()
    assert AlertIncident.objects.filter(resolved_at__isnull=True).count() == 1
    blind, _, _ = make_runner(probe=Probe(None), clock=clock, outbox=outbox)
    clock.advance(10)
    verdict = queue_verdict(blind.run_once(), "isolated")
    assert not verdict.firing and not verdict.known  # cannot tell, so it is not a recovery
    assert AlertIncident.objects.filter(resolved_at__isnull=True).count() == 1
    assert [kind for *_, kind in outbox.sent] == ["opened"]


def started(task_id: str, name: str, worker: str, at: float, **fields) -> None:
    write_events(
        [
            event("published", task_id, at - 1, name=name, queue="default", published_at=at - 1,
                  **fields),
            event("started", task_id, at, retries=0, hostname=worker, pid=7),
        ]
    )  # fmt: skip


def test_a_task_over_its_limit_opens_an_incident_until_it_finishes(make_runner):
    runner, clock, outbox = make_runner()
    task_id = new_task_id()
    started(task_id, "shop.report", "w1@h", clock.now - 90)
    report = runner.run_once()
    verdict = report.verdict(rules.TASK_OVERDUE, "shop.report")
    assert verdict is not None and verdict.firing
    assert verdict.words == "1 task running longer than 1m00s, longest 1m30s"
    write_events([event("succeeded", task_id, clock.now, retries=0, runtime=91.0)])
    clock.advance(10)
    runner.run_once()
    assert [kind for *_, kind in outbox.sent] == ["opened", "resolved"]


def test_a_worker_gone_while_running_tasks_marks_them_lost_and_they_can_be_retried(make_runner):
    runner, clock, outbox = make_runner(probe=Probe({"w1@h": ("default",)}))
    task_id = new_task_id()
    started(task_id, "workers.tasks.send_invoice", "w9@h", clock.now - 5, args="[1234]",
            kwargs="{}")  # fmt: skip
    runner.run_once()  # w9 never answered: its silence starts now
    assert TaskRun.objects.get(task_id=task_id).state == "STARTED"
    clock.advance(61)
    report = runner.run_once()
    assert report.marked_lost == 1
    assert TaskRun.objects.get(task_id=task_id).state == "LOST"
    assert outbox.sent == [(rules.WORKER_LOST, "w9@h", "opened")]

    operator = User.objects.create_user("op")
    operator.groups.add(Group.objects.get(name="operator"))
    result = task_run_retry(user=User.objects.get(pk=operator.pk), task_id=task_id, reason="lost")
    assert result.done == [task_id]
    clock.advance(10)
    runner.run_once()  # its only lost task was retried: nothing left to do for it
    assert [kind for *_, kind in outbox.sent] == ["opened", "resolved"]


def test_a_late_event_from_a_lost_task_wins(make_runner):
    runner, clock, _ = make_runner(probe=Probe({}))
    task_id = new_task_id()
    started(task_id, "shop.sync", "w9@h", clock.now - 5)
    runner.run_once()
    clock.advance(61)
    runner.run_once()
    assert TaskRun.objects.get(task_id=task_id).state == "LOST"
    write_events([event("succeeded", task_id, clock.now, retries=0, runtime=66.0)])
    assert TaskRun.objects.get(task_id=task_id).state == "SUCCESS"


def test_the_monitor_behind_the_stream(make_runner, redis_client):
    runner, clock, outbox = make_runner()
    redis_client.xadd(settings.TASKTRAIL_STREAM, {"e": b"x"})
    assert runner.run_once().verdict(rules.MONITOR_LAG, "monitor").state == "ok"
    clock.advance(125)
    verdict = runner.run_once().verdict(rules.MONITOR_LAG, "monitor")
    assert verdict is not None and verdict.firing
    assert outbox.sent == [(rules.MONITOR_LAG, "monitor", "opened")]


def test_the_monitor_command_runs_the_checks_unless_the_interval_is_zero(settings, redis_client):
    from dashboard.management.commands.monitor import start_alerts

    settings.TASKTRAIL_ALERT_CHECK_SECONDS = 0
    assert start_alerts(redis_client) is None
    settings.TASKTRAIL_ALERT_CHECK_SECONDS = 10
    started = start_alerts(redis_client)
    assert started is not None
    job, probe = started
    try:
        job()  # the workers' first answer may not be in yet: consumers unknown, no error
    finally:
        probe.stop()

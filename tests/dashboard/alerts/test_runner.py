"""A check cycle and a mail cycle against the real broker and database, with a fake probe and one
fake clock: the runners read it, and every time the test writes (publish stamps, task events,
stream entry ids) is taken from it, so no figure depends on real time passing."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User

from dashboard import redis_keys
from dashboard.alerts import rules
from dashboard.alerts.runner import CheckRunner, CycleReport, MailRunner
from dashboard.alerts.worker_probe import HeartbeatProbe, WorkersSeen
from dashboard.ingest.heartbeats import write_heartbeats
from dashboard.ingest.stream import GROUP
from dashboard.ingest.writer import write_events
from dashboard.models import AlertIncident, TaskRun, Worker
from dashboard.selectors.alerts import alert_snapshot
from dashboard.services import task_run_retry
from tasktrail.heartbeat import Heartbeat
from tests.alert_cycles import Alerts
from tests.catalog import register_demo_tasks
from tests.conftest import event, new_task_id
from workers.broker_redis import PRIORITY_SEP

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


T0 = 1_750_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

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
        return None if self.queues is None else WorkersSeen(T0, self.queues)


def message(published: float | None) -> str:
    headers: dict[str, object] = {"id": new_task_id(), "task": "shop.report"}
    if published is not None:
        headers["tasktrail_published"] = published
    return json.dumps({"body": "", "headers": headers, "properties": {}})


def declare(client, queue: str) -> None:
    """What kombu writes when a queue is declared on the default exchange."""
    client.sadd(f"_kombu.binding.{queue}", f"{queue}{PRIORITY_SEP}{PRIORITY_SEP}{queue}")


@pytest.fixture
def make_runner(redis_client) -> Callable[..., tuple[Alerts, Clock, Outbox]]:
    def make(
        probe: Probe | None = None, clock: Clock | None = None, outbox: Outbox | None = None
    ) -> tuple[Alerts, Clock, Outbox]:
        clock, outbox = clock or Clock(), outbox or Outbox()
        check = CheckRunner(
            client=redis_client,
            probe=probe or Probe({"w1@h": ("default", "inventory")}),
            thresholds=THRESHOLDS,
            clock=clock,
        )
        return (
            Alerts(check, MailRunner(thresholds=THRESHOLDS, clock=clock, send=outbox)),
            clock,
            outbox,
        )

    return make


def queue_verdict(report: CycleReport, name: str) -> rules.Verdict:
    verdict = report.verdict(rules.QUEUE_STUCK, name)
    assert verdict is not None, [v.subject for v in report.verdicts]
    return verdict


def test_no_consumer_warning_then_stuck_one_mail_across_a_restart_then_recovery(
    make_runner, redis_client
):
    declare(redis_client, "isolated")
    declare(redis_client, "default")  # the queue the worker consumes
    runner, clock, outbox = make_runner()
    for _ in range(3):
        redis_client.lpush("isolated", message(clock.now))
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
    assert again.figures["no_consumer_for"] == 71  # the condition's start is kept in Redis
    assert outbox.sent == [(rules.QUEUE_STUCK, "isolated", "opened")]
    assert AlertIncident.objects.filter(resolved_at__isnull=True).count() == 1

    redis_client.delete("isolated")  # drained
    clock.advance(10)
    assert queue_verdict(restarted.run_once(), "isolated").state == "ok"
    assert [kind for *_, kind in outbox.sent] == ["opened", "resolved"]
    assert redis_client.hgetall(redis_keys.alert_since(settings.TASKTRAIL_STREAM)) == {}


def test_priority_sub_queues_count_and_the_oldest_is_taken_across_them(make_runner, redis_client):
    declare(redis_client, "isolated")
    runner, clock, _ = make_runner(probe=Probe({"w1@h": ("isolated",)}))
    redis_client.lpush("isolated", message(clock.now - 10))
    redis_client.lpush(f"isolated{PRIORITY_SEP}3", message(clock.now - 400))
    redis_client.lpush(f"isolated{PRIORITY_SEP}9", message(clock.now - 5))
    redis_client.lpush(f"isolated{PRIORITY_SEP}9", message(None))
    verdict = queue_verdict(runner.run_once(), "isolated")
    assert verdict.figures["depth"] == 4
    assert verdict.figures["oldest_age"] == 400
    assert verdict.state == "stuck" and verdict.fired == ("oldest",)


def test_the_snapshot_the_pages_read(make_runner, redis_client):
    declare(redis_client, "isolated")
    declare(redis_client, "default")
    runner, clock, _ = make_runner()
    redis_client.lpush("isolated", message(clock.now - 90))
    runner.run_once()
    snapshot = alert_snapshot(redis_client)
    assert snapshot is not None and snapshot.workers == 1
    assert snapshot.queues["isolated"].state == "warning"
    assert snapshot.queues["default"].consumers == 1


def raw_snapshot(redis_client) -> dict:
    return json.loads(redis_client.get(redis_keys.alert_snapshot(settings.TASKTRAIL_STREAM)))


def test_the_snapshot_keeps_its_keys_and_adds_the_stream_lag(make_runner, redis_client):
    declare(redis_client, "default")
    runner, clock, _ = make_runner()
    stream = settings.TASKTRAIL_STREAM
    redis_client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    redis_client.xadd(stream, {"e": b"x"}, id=f"{int((clock.now - 125) * 1000)}-0")
    runner.run_once()
    snapshot = raw_snapshot(redis_client)
    assert sorted(snapshot) == [
        "at", "broker", "every", "queues", "redis_seconds", "stream", "workers",
    ]  # fmt: skip
    assert snapshot["at"] == T0
    assert sorted(snapshot["queues"]["default"]) == [
        "absent", "broker_oldest_age", "consumers", "consumers_from", "depth",
        "finished_per_minute", "idle_since", "oldest_age", "records_oldest_age", "state",
        "unacked", "words",
    ]  # fmt: skip
    assert snapshot["broker"] == {
        "kind": "redis", "where": settings.TASKTRAIL_BROKER_URL, "error": "", "notes": [],
        "unknown": ["consumers", "unacked", "idle_since"],
    }  # fmt: skip
    assert snapshot["stream"] == {
        "lag_entries": 1, "lag_seconds": 125.0, "length": 1, "cap": 1_000_000, "trimmed": 0,
        "trimmed_at": None,
    }  # fmt: skip


def test_the_snapshot_says_when_the_stream_lag_is_unknown(make_runner, redis_client):
    runner, _, _ = make_runner()
    redis_client.set(settings.TASKTRAIL_STREAM, "not a stream")
    runner.run_once()
    assert raw_snapshot(redis_client)["stream"] == {
        "lag_entries": None, "lag_seconds": None, "length": None, "cap": 1_000_000, "trimmed": 0,
        "trimmed_at": None,
    }  # fmt: skip


def test_the_queue_list_is_reused_for_30_seconds_of_the_checks_clock(make_runner):
    runner, clock, _ = make_runner()
    # the broker's queue list, one read of the broker, one of the stream's Redis, one write
    assert runner.run_once().redis_round_trips == 4
    clock.advance(29)
    assert runner.run_once().redis_round_trips == 3
    clock.advance(1)
    assert runner.run_once().redis_round_trips == 4


def test_when_the_workers_cannot_be_asked_an_open_incident_stays_open(make_runner, redis_client):
    declare(redis_client, "isolated")
    runner, clock, outbox = make_runner(probe=Probe({}))
    redis_client.lpush("isolated", message(clock.now))
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


def heartbeat(host: str, clock: Clock, pid: int = 7, **changes) -> None:
    """A heartbeat of ``host`` received by the monitor now (the test's clock)."""
    beat = Heartbeat(hostname=host, ts=clock.now, pid=pid, started_at=T0 - 600, **changes)
    write_heartbeats([beat], now=dt.datetime.fromtimestamp(clock.now, tz=dt.UTC))


def worker_status(host: str) -> str:
    return Worker.objects.get(hostname=host).status


def test_a_worker_gone_while_running_tasks_marks_them_lost_and_they_can_be_retried(make_runner):
    runner, clock, outbox = make_runner(probe=Probe({"w1@h": ("default",)}))
    task_id = new_task_id()
    heartbeat("w9@h", clock)
    started(task_id, "workers.tasks.send_invoice", "w9@h", clock.now - 5, args="[1234]",
            kwargs="{}")  # fmt: skip
    clock.advance(59)
    assert runner.run_once().marked_lost == 0  # silent, not yet for worker_lost_seconds
    assert TaskRun.objects.get(task_id=task_id).state == "STARTED"
    assert worker_status("w9@h") == "online"
    clock.advance(2)
    report = runner.run_once()
    assert report.marked_lost == 1 and worker_status("w9@h") == "gone"
    assert TaskRun.objects.get(task_id=task_id).state == "LOST"
    assert outbox.sent == [(rules.WORKER_LOST, "w9@h", "opened")]

    operator = User.objects.create_user("op")
    operator.groups.add(Group.objects.get(name="operator"))
    register_demo_tasks()  # retry decides from the shop's task catalog
    result = task_run_retry(user=User.objects.get(pk=operator.pk), task_id=task_id, reason="lost")
    assert result.done == [task_id]
    clock.advance(10)
    runner.run_once()  # its only lost task was retried: nothing left to do for it
    assert [kind for *_, kind in outbox.sent] == ["opened", "resolved"]


def test_a_late_event_from_a_lost_task_wins(make_runner):
    runner, clock, _ = make_runner(probe=Probe({}))
    task_id = new_task_id()
    heartbeat("w9@h", clock)
    started(task_id, "shop.sync", "w9@h", clock.now - 5)
    clock.advance(61)
    runner.run_once()
    assert TaskRun.objects.get(task_id=task_id).state == "LOST"
    write_events([event("succeeded", task_id, clock.now, retries=0, runtime=66.0)])
    assert TaskRun.objects.get(task_id=task_id).state == "SUCCESS"


def test_a_worker_beating_while_it_runs_a_long_task_is_never_gone(make_runner):
    runner, clock, outbox = make_runner(probe=Probe({}))
    task_id = new_task_id()
    started(task_id, "shop.sync", "w9@h", clock.now)
    for _ in range(40):  # 200 s of heartbeats every 5 s, a check after each
        heartbeat("w9@h", clock, running=(task_id,), running_count=1)
        clock.advance(5)
        assert runner.run_once().marked_lost == 0
    assert TaskRun.objects.get(task_id=task_id).state == "STARTED"
    assert worker_status("w9@h") == "online" and outbox.sent == []


def test_a_goodbye_is_offline_never_gone_and_opens_nothing(make_runner):
    runner, clock, outbox = make_runner(probe=Probe({}))
    task_id = new_task_id()
    heartbeat("w9@h", clock)
    started(task_id, "shop.sync", "w9@h", clock.now)
    heartbeat("w9@h", clock, goodbye=True)
    clock.advance(600)
    assert runner.run_once().marked_lost == 0
    assert worker_status("w9@h") == "offline" and outbox.sent == []


def test_a_gone_worker_beating_again_is_back_and_its_incident_resolves(make_runner):
    runner, clock, outbox = make_runner(probe=Probe({}))
    heartbeat("w9@h", clock)
    started(new_task_id(), "shop.sync", "w9@h", clock.now)
    clock.advance(61)
    runner.run_once()
    assert worker_status("w9@h") == "gone"
    heartbeat("w9@h", clock)  # it was cut off from Redis, not dead
    clock.advance(5)
    runner.run_once()
    assert worker_status("w9@h") == "online"
    assert [kind for *_, kind in outbox.sent] == ["opened", "resolved"]


def test_a_monitor_behind_the_stream_does_not_take_its_backlog_for_silence(
    make_runner, redis_client
):
    runner, clock, outbox = make_runner(probe=Probe({}))
    heartbeat("w9@h", clock)
    started(new_task_id(), "shop.sync", "w9@h", clock.now)
    # the next heartbeats wait in the stream, unwritten: the monitor was down for a while
    redis_client.xadd(settings.TASKTRAIL_STREAM, {"h": b"x"}, id=f"{int(clock.now * 1000) + 1}-0")
    clock.advance(300)
    assert runner.run_once().marked_lost == 0
    assert worker_status("w9@h") == "online"
    assert outbox.sent == [(rules.MONITOR_LAG, "monitor", "opened")]  # the lag is the incident


def test_queue_consumers_come_from_the_live_workers_heartbeats(redis_client):
    clock = Clock()
    assert HeartbeatProbe(clock)() == WorkersSeen(clock.now, {})  # none: no consumer
    heartbeat("w1@h", clock, queues=("default", "mail"))
    heartbeat("w2@h", clock, queues=("mail",))
    heartbeat("w3@h", clock, queues=("mail",), goodbye=True)
    seen = HeartbeatProbe(clock)()
    assert seen is not None
    assert (seen.consumers("default"), seen.consumers("mail"), seen.consumers("x")) == (1, 2, 0)


def test_the_monitor_behind_the_stream(make_runner, redis_client):
    runner, clock, outbox = make_runner()
    redis_client.xadd(settings.TASKTRAIL_STREAM, {"e": b"x"}, id=f"{int(clock.now * 1000)}-0")
    assert runner.run_once().verdict(rules.MONITOR_LAG, "monitor").state == "ok"
    clock.advance(125)
    verdict = runner.run_once().verdict(rules.MONITOR_LAG, "monitor")
    assert verdict is not None and verdict.firing
    assert outbox.sent == [(rules.MONITOR_LAG, "monitor", "opened")]

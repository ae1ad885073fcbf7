"""Alerts against real workers, the real broker and a real SMTP server on loopback.

The checks' clock is a fake one running ahead of real time (``Clock.advance``), so thresholds are
crossed without sleeping; ages and durations are measured against it. The workers' heartbeats,
queue depths and mail are real.
"""

from __future__ import annotations

import signal
import sys
import time

import pytest
from django.contrib.auth.models import Group, User

from dashboard.alerts import rules
from dashboard.alerts.runner import CheckRunner, CycleReport, MailRunner
from dashboard.alerts.worker_probe import HeartbeatProbe
from dashboard.models import AlertIncident, TaskRun
from dashboard.services import task_run_retry
from tests.alert_cycles import Alerts
from tests.integration import tasks as itasks
from tests.integration.conftest import drain, monitor_alert_env, wait_until
from tests.processes import spawn
from workers.broker import PRIORITY_SEP

pytestmark = pytest.mark.integration

THRESHOLDS = rules.Thresholds(
    queue=rules.QueueThresholds(
        oldest_seconds=30, warning_oldest_seconds=10, no_consumer_seconds=5, no_progress_seconds=0
    ),
    worker_lost_seconds=20,
    remind_seconds=60,
)
STUCK_PREFIX = "[tasktrail] queue isolated stuck: oldest message waiting "


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def runner(redis_client, clock: Clock) -> Alerts:
    """Check and mail runners as the monitor builds them; new ones are a monitor restart."""
    # kombu declares a queue (its binding, which lists it as known) once per process; the suite
    # deletes the bindings between tests, so say it again.
    redis_client.sadd("_kombu.binding.isolated", f"isolated{PRIORITY_SEP}{PRIORITY_SEP}isolated")
    check = CheckRunner(
        client=redis_client, probe=HeartbeatProbe(clock), thresholds=THRESHOLDS, clock=clock
    )
    return Alerts(check, MailRunner(thresholds=THRESHOLDS, clock=clock))


def isolated(report: CycleReport) -> rules.Verdict:
    verdict = report.verdict(rules.QUEUE_STUCK, "isolated")
    assert verdict is not None
    return verdict


def test_stuck_queue_one_mail_a_reminder_a_restart_and_one_recovery_mail(
    start_worker, redis_client, smtp_server
):
    results = [itasks.nap.apply_async((f"R-{i}", 0), queue="isolated") for i in range(3)]
    drain(redis_client)
    clock = Clock()
    first = runner(redis_client, clock)

    verdict = isolated(first.run_once())
    assert (verdict.state, verdict.figures["depth"], verdict.figures["consumers"]) == (
        "warning",
        3,
        0,
    )
    assert smtp_server.received == []

    clock.advance(6)  # no consumer for longer than 5 s
    verdict = isolated(first.run_once())
    assert verdict.state == "stuck" and verdict.fired == (rules.NO_CONSUMER,)
    [alert] = smtp_server.received
    assert alert.subject.startswith(STUCK_PREFIX)
    assert alert.subject.endswith(", 3 waiting, no consumer")
    assert "Likely cause: No worker consumes this queue" in alert.part("text/plain")
    first.run_once()
    assert len(smtp_server.received) == 1

    restarted = runner(redis_client, clock)  # the monitor restarts mid-incident
    clock.advance(1)
    restarted.run_once()
    assert len(smtp_server.received) == 1
    assert AlertIncident.objects.filter(resolved_at__isnull=True).count() == 1

    clock.advance(60)  # the reminder interval
    restarted.run_once()
    restarted.run_once()
    assert len(smtp_server.received) == 2
    assert smtp_server.received[1].subject.startswith(
        "[tasktrail] reminder: queue isolated stuck for 1m"
    )

    start_worker(queues="isolated", name="isolated")
    wait_until(
        redis_client,
        lambda: TaskRun.objects.filter(id__in=_rows(results), state="SUCCESS").count() == 3,
        what="the queue drained",
    )
    verdict = isolated(restarted.run_once())
    assert verdict.state == "ok" and verdict.figures["depth"] == 0
    restarted.run_once()
    assert len(smtp_server.received) == 3
    assert smtp_server.received[2].subject.startswith(
        "[tasktrail] recovered: queue isolated stuck, after 1m"
    )
    incident = AlertIncident.objects.get()
    assert incident.resolved_at is not None and incident.reminders_sent == 1


def _rows(results) -> list[int]:
    return list(
        TaskRun.objects.filter(task_id__in=[r.id for r in results]).values_list("id", flat=True)
    )


def test_priority_sub_queues_are_counted(redis_client, transactional_db):
    itasks.nap.apply_async(("R-low", 0), queue="isolated")
    itasks.nap.apply_async(("R-high", 0), queue="isolated", priority=9)
    assert redis_client.llen(f"isolated{PRIORITY_SEP}9") == 1
    report = runner(redis_client, Clock()).run_once()
    assert isolated(report).figures["depth"] == 2


def test_eta_tasks_do_not_count_as_waiting(start_worker, redis_client, smtp_server):
    start_worker(queues="isolated", name="eta")
    later = itasks.nap.apply_async(("R-eta", 0), queue="isolated", countdown=300)
    wait_until(
        redis_client,
        lambda: TaskRun.objects.filter(task_id=later.id, received_at__isnull=False).exists(),
        what="the worker holding the ETA task",
    )
    clock = Clock()
    check = runner(redis_client, clock)
    check.run_once()
    clock.advance(120)  # long past every queue threshold
    verdict = isolated(check.run_once())
    assert (verdict.state, verdict.figures["depth"]) == ("ok", 0)
    assert verdict.figures["consumers"] == 1
    assert smtp_server.received == []
    later.revoke()


def test_a_killed_worker_loses_its_task_which_can_be_retried(
    start_worker, redis_client, smtp_server
):
    doomed = start_worker(queues="isolated", name="doomed")
    hung = itasks.nap.apply_async(("R-hung", 120), queue="isolated")
    wait_until(
        redis_client,
        lambda: TaskRun.objects.filter(task_id=hung.id, state="STARTED").exists(),
        what="the task running",
    )
    clock = Clock()
    check = runner(redis_client, clock)
    check.run_once()  # the worker beats
    doomed.stop(signal.SIGKILL)
    drain(redis_client)  # its last heartbeats: silent since the last one
    check.run_once()
    assert TaskRun.objects.get(task_id=hung.id).state == "STARTED"
    clock.advance(21)
    report = check.run_once()
    assert report.marked_lost == 1
    row = TaskRun.objects.get(task_id=hung.id)
    assert row.state == "LOST"
    [alert] = smtp_server.received
    assert alert.subject.startswith(f"[tasktrail] worker {row.worker} gone: silent for ")
    assert alert.subject.endswith("with 1 unfinished task")

    operator = User.objects.create_user("it-operator")
    operator.groups.add(Group.objects.get(name="operator"))
    result = task_run_retry(user=User.objects.get(pk=operator.pk), task_id=hung.id, reason="lost")
    assert result.done == [hung.id]
    clock.advance(1)
    check.run_once()
    assert [m.subject.split(":")[0] for m in smtp_server.received] == [
        f"[tasktrail] worker {row.worker} gone",
        "[tasktrail] recovered",
    ]


def test_the_monitor_process_checks_and_mails_to_its_console(redis_client, transactional_db):
    """``manage.py monitor`` as in ``make demo``: alerts on, console email backend."""
    itasks.nap.apply_async(("R-console", 0), queue="isolated")
    redis_client.sadd("_kombu.binding.isolated", f"isolated{PRIORITY_SEP}{PRIORITY_SEP}isolated")
    quick = {"no_consumer_seconds": 1, "oldest_seconds": 0, "no_progress_seconds": 0}
    env = monitor_alert_env(quick, EMAIL_BACKEND="django.core.mail.backends.console.EmailBackend")
    monitor = spawn([sys.executable, "manage.py", "monitor", "--consumer", "itest-alerts"], env)
    try:
        monitor.output.wait_for("Subject: [tasktrail] queue isolated stuck", 60)
    finally:
        code = monitor.stop()
    assert code == 0, monitor.output.text
    assert AlertIncident.objects.get(resolved_at__isnull=True).subject == "isolated"

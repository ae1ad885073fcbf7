"""A paused queue is paused, not stuck: no queue-stuck incident however long its messages wait with
no consumer, and a "still paused" reminder once it has been paused longer than
``TASKTRAIL_QUEUE_PAUSE_REMIND_SECONDS``, resolved by the resume. Real Redis and database, the
pause and resume through the service, a clock the test moves."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
from django.contrib.auth.models import Group, User

from dashboard.alerts import rules
from dashboard.alerts.mail import context
from dashboard.alerts.runner import CheckRunner, CycleReport, MailRunner
from dashboard.alerts.worker_probe import WorkersSeen
from dashboard.models import AlertIncident, QueuePause
from dashboard.services_queues import queue_pause, queue_resume
from tests.alert_cycles import Alerts

pytestmark = pytest.mark.django_db

THRESHOLDS = rules.Thresholds(
    queue=rules.QueueThresholds(
        oldest_seconds=300, warning_oldest_seconds=60, no_consumer_seconds=60, no_progress_seconds=0
    ),
    remind_seconds=1800,
)
QUEUE = "isolated"  # a queue the suite's Redis fixture cleans up


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Outbox:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    def __call__(self, incident: AlertIncident, kind: str, now: dt.datetime) -> int:
        self.sent.append((incident.rule, incident.subject, kind))
        return 1


def operator() -> User:
    person = User.objects.create_user(f"operator-{uuid.uuid4().hex[:8]}")
    person.groups.add(Group.objects.get(name="operator"))
    return User.objects.get(pk=person.pk)


def message(published: float) -> str:
    headers = {"id": uuid.uuid4().hex, "task": "shop.report", "tasktrail_published": published}
    return json.dumps({"body": "", "headers": headers, "properties": {}})


def verdict(report: CycleReport, rule: str) -> rules.Verdict:
    found = report.verdict(rule, QUEUE)
    assert found is not None, [(v.rule, v.subject) for v in report.verdicts]
    return found


def test_a_paused_queue_never_sticks_and_reminds_once_paused_too_long(redis_client, settings):
    settings.TASKTRAIL_QUEUE_PAUSE_REMIND_SECONDS = 600
    person = operator()
    assert queue_pause(user=person, queue=QUEUE, reason="provider down").action.outcome in (
        "done",
        "partial",  # no worker listens on the test's broker: the pause is kept all the same
    )
    clock = Clock(QueuePause.objects.get(queue=QUEUE).paused_at.timestamp())
    outbox = Outbox()
    check = CheckRunner(
        client=redis_client,
        probe=lambda: WorkersSeen(clock(), {"w1@h": ("default",)}),  # nobody consumes it
        thresholds=THRESHOLDS,
        clock=clock,
    )
    alerts = Alerts(check, MailRunner(thresholds=THRESHOLDS, clock=clock, send=outbox))
    for _ in range(3):
        redis_client.lpush(QUEUE, message(clock.now))

    first = alerts.run_once()
    assert verdict(first, rules.QUEUE_STUCK).state == "ok"
    assert verdict(first, rules.QUEUE_STUCK).words.startswith("paused, ")
    assert verdict(first, rules.QUEUE_PAUSED).state == "ok"

    clock.now += 400  # past the oldest-message and no-consumer limits: still not stuck
    later = alerts.run_once()
    stuck = verdict(later, rules.QUEUE_STUCK)
    assert (stuck.state, stuck.fired, stuck.figures["no_consumer_for"]) == ("ok", (), None)
    assert verdict(later, rules.QUEUE_PAUSED).state == "ok"
    assert outbox.sent == []

    clock.now += 201  # paused 601 s: the reminder opens, once
    reminded = alerts.run_once()
    paused = verdict(reminded, rules.QUEUE_PAUSED)
    assert paused.firing
    assert paused.words == f"paused 10m01s ago by {person.username}, 3 waiting"
    assert verdict(reminded, rules.QUEUE_STUCK).state == "ok"
    alerts.run_once()
    assert outbox.sent == [(rules.QUEUE_PAUSED, QUEUE, "opened")]
    incident = AlertIncident.objects.get(rule=rules.QUEUE_PAUSED, subject=QUEUE)
    assert incident.headline == f"queue {QUEUE} still paused"
    mailed = dict(context(incident, "opened", dt.datetime.now(dt.UTC))["figures"])
    assert (mailed["Paused by"], mailed["Reason given"]) == (person.username, "provider down")
    assert not AlertIncident.objects.filter(rule=rules.QUEUE_STUCK).exists()

    queue_resume(user=person, queue=QUEUE, reason="provider back")
    clock.now += 10
    alerts.run_once()
    incident.refresh_from_db()
    assert incident.resolved_at is not None
    assert outbox.sent[-1] == (rules.QUEUE_PAUSED, QUEUE, "resolved")


def test_evaluate_pause_reminds_only_past_its_threshold():
    pause = rules.PauseFigures(QUEUE, 3599.0, "ops", "maintenance")
    assert rules.evaluate_pause(pause, 3600).state == "ok"
    due = rules.evaluate_pause(rules.PauseFigures(QUEUE, 3600.0, "ops", "maintenance"), 3600)
    assert (due.state, due.fired, due.words) == ("stuck", ("paused",), "paused 1h00m ago by ops")
    assert rules.evaluate_pause(rules.PauseFigures(QUEUE, 10**6, "ops", "x"), 0).state == "ok"


def test_a_paused_queue_has_no_timed_conditions():
    figures = rules.QueueFigures(QUEUE, 5, 900.0, 0, 0, paused=True)
    assert rules.queue_conditions(figures) == {rules.NO_CONSUMER: False, rules.NO_PROGRESS: False}
    held = {rules.NO_CONSUMER: 10_000.0, rules.NO_PROGRESS: 10_000.0}
    verdict = rules.evaluate_queue(figures, rules.QueueThresholds(), held)
    assert (verdict.state, verdict.fired, verdict.known) == ("ok", (), True)

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
        # this queue's notices only: an event an earlier test's recorder wrote late would open
        # "monitor behind" once the clock moves minutes ahead
        if incident.subject == QUEUE:
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


def test_after_a_long_pause_the_oldest_message_counts_its_wait_from_the_resume(
    redis_client, settings
):
    """Messages held for an hour by a pause are not "stuck" the moment the queue is resumed: the
    oldest-message limits (warning 60 s, stuck 300 s) count from the resume."""
    settings.TASKTRAIL_QUEUES = [QUEUE]  # measured once resumed, as the shop's queues are
    person = operator()
    queue_pause(user=person, queue=QUEUE, reason="maintenance")
    paused_at = QueuePause.objects.get(queue=QUEUE).paused_at.timestamp()
    clock = Clock(paused_at)
    consumers = {"w1@h": (QUEUE,)}  # a worker consumes it: only the oldest-message limits matter
    check = CheckRunner(
        client=redis_client,
        probe=lambda: WorkersSeen(clock(), consumers),
        thresholds=THRESHOLDS,
        clock=clock,
    )
    outbox = Outbox()
    alerts = Alerts(check, MailRunner(thresholds=THRESHOLDS, clock=clock, send=outbox))
    redis_client.lpush(QUEUE, message(paused_at - 3600))  # held for an hour
    assert verdict(alerts.run_once(), rules.QUEUE_STUCK).state == "ok"

    resumed = queue_resume(user=person, queue=QUEUE, reason="maintenance over").action
    resumed_at = resumed.at.timestamp()
    for after, state in ((1, "ok"), (59, "ok"), (61, "warning"), (299, "warning")):
        clock.now = resumed_at + after
        found = verdict(alerts.run_once(), rules.QUEUE_STUCK)
        assert (found.state, found.fired) == (state, ()), after
        assert found.figures["oldest_age"] > 3600  # shown as it is
        assert "resumed " in found.words
    assert not AlertIncident.objects.filter(rule=rules.QUEUE_STUCK).exists()

    clock.now = resumed_at + 301  # five minutes after the resume, the oldest still waits: stuck
    stuck = verdict(alerts.run_once(), rules.QUEUE_STUCK)
    assert (stuck.state, stuck.fired) == ("stuck", ("oldest",))
    assert "resumed" not in stuck.words
    alerts.run_once()
    assert (rules.QUEUE_STUCK, QUEUE, "opened") in outbox.sent


def test_a_failed_resume_gives_no_grace():
    figures = rules.QueueFigures(QUEUE, 5, 900.0, 1, None, resumed_ago=None)
    limits = rules.QueueThresholds(oldest_seconds=300, no_progress_seconds=0)
    assert rules.evaluate_queue(figures, limits, {}).fired == ("oldest",)
    recent = rules.QueueFigures(QUEUE, 5, 900.0, 1, None, resumed_ago=30.0)
    assert rules.evaluate_queue(recent, limits, {}).state == "ok"

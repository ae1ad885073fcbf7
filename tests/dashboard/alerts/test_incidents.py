"""Incidents in the database: opened once, reminded, resolved, restart-safe, one sender."""

from __future__ import annotations

import datetime as dt

import pytest

from dashboard.alerts import incidents, rules
from dashboard.alerts.incidents import deliver_due, open_incident, sync_incidents
from dashboard.alerts.mail import send_notice, subject_line
from dashboard.models import AlertIncident

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
REMIND = dt.timedelta(minutes=30)


def stuck(subject: str = "emails", words: str = "342 waiting, no consumer") -> rules.Verdict:
    return rules.Verdict(
        rule=rules.QUEUE_STUCK,
        subject=subject,
        state="stuck",
        words=words,
        cause="nobody consumes it",
        fired=("no_consumer",),
        figures={"depth": 342, "consumers": 0},
    )


def state(value: rules.State, subject: str = "emails", known: bool = True) -> rules.Verdict:
    return rules.Verdict(rules.QUEUE_STUCK, subject, value, words="0 waiting", known=known)


class Outbox:
    """A sender that records (incident id, kind) and can be made to fail."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, str]] = []
        self.error: Exception | None = None

    def __call__(self, incident: AlertIncident, kind: str, now: dt.datetime) -> int:
        if self.error is not None:
            raise self.error
        self.sent.append((incident.pk, kind))
        return 1


def test_a_stuck_verdict_opens_one_incident_and_later_checks_refresh_it():
    first = sync_incidents([stuck()], set(), T0)
    assert len(first.opened) == 1
    again = sync_incidents([stuck(words="400 waiting, no consumer")], set(), T0 + REMIND)
    assert again.opened == [] and len(again.still_open) == 1
    incident = AlertIncident.objects.get()
    assert incident.is_open and incident.opened_at == T0
    assert incident.summary == "400 waiting, no consumer"
    assert incident.checked_at == T0 + REMIND
    assert incident.details["figures"] == {"depth": 342, "consumers": 0}


def test_only_one_open_incident_per_rule_and_subject_even_when_two_monitors_race():
    assert open_incident(stuck(), T0) is not None
    assert open_incident(stuck(), T0) is None  # the partial unique index refuses a second
    other_queue = open_incident(stuck("reports"), T0)
    assert other_queue is not None
    assert AlertIncident.objects.filter(resolved_at__isnull=True).count() == 2


def test_resolved_when_ok_then_a_new_incident_may_open():
    sync_incidents([stuck()], set(), T0)
    result = sync_incidents([state("ok")], set(), T0 + dt.timedelta(minutes=5))
    assert len(result.resolved) == 1
    resolved = AlertIncident.objects.get()
    assert resolved.resolved_at == T0 + dt.timedelta(minutes=5)
    assert resolved.details["at_recovery"] == {}
    sync_incidents([stuck()], set(), T0 + dt.timedelta(minutes=10))
    assert AlertIncident.objects.count() == 2


def test_warning_and_unknown_keep_it_open():
    sync_incidents([stuck()], set(), T0)
    assert sync_incidents([state("warning")], set(), T0).resolved == []
    assert sync_incidents([state("ok", known=False)], set(), T0).resolved == []
    assert AlertIncident.objects.get().summary == "342 waiting, no consumer"  # stuck figures kept


def test_a_subject_not_checked_stays_open_unless_its_rule_checked_everything():
    task = rules.Verdict(rules.TASK_OVERDUE, "shop.report", "stuck", words="1 task")
    sync_incidents([stuck(), task], set(), T0)
    assert sync_incidents([], set(), T0).resolved == []  # broker away: nothing checked
    result = sync_incidents([], {rules.TASK_OVERDUE}, T0)
    assert [i.rule for i in result.resolved] == [rules.TASK_OVERDUE]


def test_opened_mail_once_across_restarts_then_reminders_at_the_interval():
    outbox = Outbox()
    sync_incidents([stuck()], set(), T0)
    deliver_due(T0, REMIND, outbox)
    # the monitor restarts: a fresh check finds the incident open and mails nothing new
    sync_incidents([stuck()], set(), T0 + dt.timedelta(seconds=10))
    deliver_due(T0 + dt.timedelta(seconds=10), REMIND, outbox)
    deliver_due(T0 + REMIND - dt.timedelta(seconds=1), REMIND, outbox)
    assert [kind for _, kind in outbox.sent] == ["opened"]
    deliver_due(T0 + REMIND, REMIND, outbox)
    deliver_due(T0 + REMIND + dt.timedelta(seconds=10), REMIND, outbox)
    assert [kind for _, kind in outbox.sent] == ["opened", "reminder"]
    incident = AlertIncident.objects.get()
    assert incident.reminders_sent == 1 and incident.last_notified_at == T0 + REMIND


def test_recovery_mail_once():
    outbox = Outbox()
    sync_incidents([stuck()], set(), T0)
    deliver_due(T0, REMIND, outbox)
    sync_incidents([state("ok")], set(), T0 + dt.timedelta(minutes=1))
    for seconds in (60, 70, 4000):
        deliver_due(T0 + dt.timedelta(seconds=seconds), REMIND, outbox)
    assert [kind for _, kind in outbox.sent] == ["opened", "resolved"]
    assert AlertIncident.objects.get().recovery_notified_at == T0 + dt.timedelta(minutes=1)


def test_the_send_lease_lets_one_monitor_send():
    sync_incidents([stuck()], set(), T0)
    incident = AlertIncident.objects.get()
    assert incidents.claim(incident, "opened", T0, REMIND)
    assert not incidents.claim(incident, "opened", T0, REMIND)  # the other monitor
    outbox = Outbox()
    assert deliver_due(T0, REMIND, outbox).sent == []  # leased: not due for anyone else
    # a monitor that died mid-send: its lease runs out and the notice goes out after all
    deliver_due(T0 + incidents.SEND_LEASE, REMIND, outbox)
    assert outbox.sent == [(incident.pk, "opened")]


def test_a_failing_mail_server_is_retried_with_backoff_and_shown_on_the_incident():
    outbox = Outbox()
    outbox.error = ConnectionRefusedError(111, "Connection refused")
    sync_incidents([stuck()], set(), T0)
    delivery = deliver_due(T0, REMIND, outbox)
    assert delivery.failed and not delivery.sent
    incident = AlertIncident.objects.get()
    assert incident.notify_attempts == 1
    assert incident.last_error == "ConnectionRefusedError: [Errno 111] Connection refused"
    assert incident.retry_at == T0 + dt.timedelta(seconds=incidents.BACKOFF_FIRST)
    deliver_due(T0 + dt.timedelta(seconds=5), REMIND, outbox)  # backing off
    assert AlertIncident.objects.get().notify_attempts == 1
    deliver_due(T0 + dt.timedelta(seconds=15), REMIND, outbox)
    assert AlertIncident.objects.get().notify_attempts == 2
    outbox.error = None
    deliver_due(T0 + dt.timedelta(seconds=45), REMIND, outbox)
    assert outbox.sent == [(incident.pk, "opened")]
    incident.refresh_from_db()
    assert (incident.notify_attempts, incident.last_error, incident.retry_at) == (0, "", None)


def test_backoff_doubles_up_to_ten_minutes():
    assert [incidents.backoff(n).total_seconds() for n in (1, 2, 3, 10)] == [15, 30, 60, 600]


def test_nobody_to_mail_is_noted_not_retried():
    sync_incidents([stuck()], set(), T0)
    deliver_due(T0, REMIND, lambda incident, kind, now: 0)
    incident = AlertIncident.objects.get()
    assert incident.last_notified_at == T0 and "TASKTRAIL_ALERT_EMAILS" in incident.last_error
    assert incidents.due_notices(T0 + dt.timedelta(seconds=20), REMIND) == []


# -- acknowledged incidents -----------------------------------------------------------------------


def acknowledge(incident: AlertIncident, until: dt.datetime) -> None:
    """What the service writes (its own tests cover it): the silence and what was firing."""
    incident.refresh_from_db()
    details = dict(incident.details)
    details["acknowledged"] = {"fired": list(details["fired"]), "state": details["state"]}
    AlertIncident.objects.filter(pk=incident.pk).update(
        acknowledged_at=T0, silenced_until=until, acknowledge_note="on it", details=details
    )


def test_an_acknowledged_incident_sends_no_reminder_until_silenced_until():
    outbox = Outbox()
    sync_incidents([stuck()], set(), T0)
    deliver_due(T0, REMIND, outbox)
    acknowledge(AlertIncident.objects.get(), until=T0 + 4 * REMIND)
    for minutes in (30, 60, 90, 119):
        sync_incidents([stuck()], set(), T0 + dt.timedelta(minutes=minutes))
        deliver_due(T0 + dt.timedelta(minutes=minutes), REMIND, outbox)
    assert [kind for _, kind in outbox.sent] == ["opened"]
    deliver_due(T0 + 4 * REMIND, REMIND, outbox)
    assert [kind for _, kind in outbox.sent] == ["opened", "reminder"]


def test_an_acknowledged_incident_still_sends_its_recovery_mail():
    outbox = Outbox()
    sync_incidents([stuck()], set(), T0)
    deliver_due(T0, REMIND, outbox)
    acknowledge(AlertIncident.objects.get(), until=T0 + 4 * REMIND)
    sync_incidents([state("ok")], set(), T0 + dt.timedelta(minutes=5))
    deliver_due(T0 + dt.timedelta(minutes=5), REMIND, outbox)
    assert [kind for _, kind in outbox.sent] == ["opened", "resolved"]


def test_a_new_incident_after_recovery_is_not_acknowledged():
    sync_incidents([stuck()], set(), T0)
    acknowledge(AlertIncident.objects.get(), until=T0 + 4 * REMIND)
    sync_incidents([state("ok")], set(), T0 + dt.timedelta(minutes=5))
    opened = sync_incidents([stuck()], set(), T0 + dt.timedelta(minutes=10)).opened
    outbox = Outbox()
    deliver_due(T0 + dt.timedelta(minutes=10), REMIND, outbox)
    deliver_due(T0 + dt.timedelta(minutes=40), REMIND, outbox)
    assert [(pk, kind) for pk, kind in outbox.sent if pk == opened[0].pk] == [
        (opened[0].pk, "opened"),
        (opened[0].pk, "reminder"),
    ]
    assert AlertIncident.objects.get(pk=opened[0].pk).silenced_until is None


def test_a_new_condition_on_an_acknowledged_incident_lifts_the_silence():
    sync_incidents([stuck()], set(), T0)
    acknowledge(AlertIncident.objects.get(), until=T0 + 4 * REMIND)
    worse = rules.Verdict(
        rules.QUEUE_STUCK, "emails", "stuck", words="900 waiting",
        fired=("no_consumer", "oldest_too_old"),
    )  # fmt: skip
    sync_incidents([worse], set(), T0 + dt.timedelta(minutes=1))
    incident = AlertIncident.objects.get()
    assert incident.silenced_until is None
    assert incident.details["reminders_resumed"] == "new condition: oldest_too_old"
    assert incident.details["acknowledged"] == {"fired": ["no_consumer"], "state": "stuck"}


def test_stuck_again_after_warning_lifts_the_silence():
    sync_incidents([stuck()], set(), T0)
    acknowledge(AlertIncident.objects.get(), until=T0 + 4 * REMIND)
    sync_incidents([state("warning")], set(), T0 + dt.timedelta(minutes=1))
    assert AlertIncident.objects.get().silenced_until == T0 + 4 * REMIND
    sync_incidents([stuck()], set(), T0 + dt.timedelta(minutes=2))
    incident = AlertIncident.objects.get()
    assert incident.silenced_until is None
    assert incident.details["reminders_resumed"] == "stuck again"


def test_the_same_condition_still_stuck_keeps_the_silence():
    sync_incidents([stuck()], set(), T0)
    acknowledge(AlertIncident.objects.get(), until=T0 + 4 * REMIND)
    sync_incidents([stuck(words="500 waiting, no consumer")], set(), T0 + dt.timedelta(minutes=1))
    assert AlertIncident.objects.get().silenced_until == T0 + 4 * REMIND


def test_a_check_does_not_overwrite_an_acknowledgement_made_since_it_read_the_row():
    sync_incidents([stuck()], set(), T0)
    read_before = AlertIncident.objects.get()
    acknowledge(read_before, until=T0 + 4 * REMIND)
    read_before.acknowledged_at = None  # as the check read it, before the acknowledgement
    incidents.refresh(read_before, stuck(), T0 + dt.timedelta(minutes=1))
    assert AlertIncident.objects.get().details["acknowledged"] == {
        "fired": ["no_consumer"],
        "state": "stuck",
    }


def test_an_acknowledged_incident_mails_no_reminder_over_smtp_until_silenced_until(smtp_server):
    sync_incidents([stuck()], set(), T0)
    deliver_due(T0, REMIND, send_notice)
    acknowledge(AlertIncident.objects.get(), until=T0 + 3 * REMIND)
    deliver_due(T0 + REMIND, REMIND, send_notice)
    deliver_due(T0 + 2 * REMIND, REMIND, send_notice)
    assert len(smtp_server.received) == 1
    deliver_due(T0 + 3 * REMIND, REMIND, send_notice)
    assert len(smtp_server.received) == 2
    incident = AlertIncident.objects.get()
    assert smtp_server.received[1].subject == subject_line(incident, "reminder", T0 + 3 * REMIND)

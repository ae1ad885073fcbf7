"""Alert mail through Django's SMTP backend to a real SMTP server on loopback."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Group, Permission, User

from dashboard.alerts import rules
from dashboard.alerts.incidents import deliver_due, sync_incidents
from dashboard.alerts.mail import recipients, send_notice
from dashboard.models import AlertIncident
from tests.smtp import free_port

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
REMIND = dt.timedelta(minutes=30)
HOSTILE = "<img src=x onerror=alert(1)>"


def stuck_queue(name: str = "emails") -> rules.Verdict:
    figures = rules.QueueFigures(
        name=name,
        depth=342,
        oldest_age=432.4,
        consumers=0,
        finished_in_window=0,
        finished_per_minute=0.0,
    )
    return rules.evaluate_queue(figures, rules.QueueThresholds(), {rules.NO_CONSUMER: 432.0})


def test_the_alert_mail_has_the_subject_the_figures_and_both_parts(smtp_server):
    sync_incidents([stuck_queue()], set(), T0)
    deliver_due(T0, REMIND, send_notice)
    [mail] = smtp_server.received
    assert mail.subject == (
        "[tasktrail] queue emails stuck: oldest message waiting 7m12s, 342 waiting, no consumer"
    )
    assert mail.envelope_to == ["oncall@example.com"]
    assert mail.message["X-Tasktrail-Notice"] == "opened"
    text = mail.part("text/plain")
    assert "Waiting: 342" in text and "Oldest waiting: 7m12s" in text
    assert "Consumers: 0" in text and "No consumer for: 7m12s" in text
    assert "Likely cause: No worker consumes this queue" in text
    assert "http://127.0.0.1:8000/queues/" in text
    assert "http://127.0.0.1:8000/tasks/?queue=emails" in text
    html = mail.part("text/html")
    assert '<a href="http://127.0.0.1:8000/queues/">Queues</a>' in html
    assert '<th scope="row"' in html and "342" in html


def test_reminder_and_recovery_subjects(smtp_server):
    sync_incidents([stuck_queue()], set(), T0)
    deliver_due(T0, REMIND, send_notice)
    deliver_due(T0 + REMIND + dt.timedelta(seconds=5), REMIND, send_notice)
    ok = rules.evaluate_queue(
        rules.QueueFigures("emails", 0, None, 2, 10, 3.0), rules.QueueThresholds(), {}
    )
    sync_incidents([ok], set(), T0 + dt.timedelta(minutes=42))
    deliver_due(T0 + dt.timedelta(minutes=42), REMIND, send_notice)
    assert smtp_server.subjects()[1:] == [
        "[tasktrail] reminder: queue emails stuck for 30m05s: oldest message waiting 7m12s, "
        "342 waiting, no consumer",
        "[tasktrail] recovered: queue emails stuck, after 42m00s",
    ]
    recovery = smtp_server.received[2].part("text/plain")
    assert "Recovered: queue emails stuck, after 42m00s." in recovery
    assert "Figures at recovery:" in recovery and "Waiting: 0" in recovery


def test_values_from_queues_are_escaped_and_the_subject_stays_one_line(smtp_server):
    name = HOSTILE + "\r\nBcc: victim@example.com"
    sync_incidents([stuck_queue(name)], set(), T0)
    deliver_due(T0, REMIND, send_notice)
    [mail] = smtp_server.received
    assert "\n" not in mail.subject and "\r" not in mail.subject
    assert mail.message["Bcc"] is None
    assert mail.envelope_to == ["oncall@example.com"]
    html = mail.part("text/html")
    assert HOSTILE not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_recipients_from_the_setting_and_from_users_with_the_alerts_permission(settings):
    settings.TASKTRAIL_ALERT_EMAILS = ["oncall@example.com", "OnCall@example.com"]
    permission = Permission.objects.get(codename="receive_alerts")
    direct = User.objects.create_user("ops1", email="ops1@example.com")
    direct.user_permissions.add(permission)
    group = Group.objects.create(name="on-call")
    group.permissions.add(permission)
    via_group = User.objects.create_user("ops2", email="ops2@example.com")
    via_group.groups.add(group)
    User.objects.create_user("ops3", email="ops3@example.com", is_active=False).groups.add(group)
    User.objects.create_user("ops4").groups.add(group)  # no address
    User.objects.create_user("dev", email="dev@example.com")  # not flagged
    found = recipients()
    assert found[0] == "oncall@example.com"  # the setting's own, once (case-insensitive)
    assert sorted(found[1:]) == ["ops1@example.com", "ops2@example.com"]


def test_a_refusing_mail_server_is_retried_and_the_error_shown(smtp_server):
    smtp_server.handler.refuse = True
    sync_incidents([stuck_queue()], set(), T0)
    delivery = deliver_due(T0, REMIND, send_notice)
    assert delivery.failed and not smtp_server.received
    incident = AlertIncident.objects.get()
    assert incident.notify_attempts == 1 and "451" in incident.last_error
    smtp_server.handler.refuse = False
    deliver_due(T0 + dt.timedelta(minutes=1), REMIND, send_notice)
    assert len(smtp_server.received) == 1
    assert AlertIncident.objects.get().notify_attempts == 0


def test_no_mail_server_at_all(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port(), 2
    settings.TASKTRAIL_ALERT_EMAILS = ["oncall@example.com"]
    sync_incidents([stuck_queue()], set(), T0)
    deliver_due(T0, REMIND, send_notice)
    incident = AlertIncident.objects.get()
    assert incident.is_open and incident.last_notified_at is None
    assert incident.last_error.startswith("ConnectionRefusedError")

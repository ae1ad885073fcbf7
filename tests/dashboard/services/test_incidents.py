"""Acknowledging an incident: permission → state → audit, and the silence it sets."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone

from dashboard.alerts import rules
from dashboard.alerts.incidents import open_incident, resolve
from dashboard.models import AlertIncident, OperatorAction
from dashboard.services_incidents import (
    AcknowledgeInputError,
    incident_acknowledge,
)

pytestmark = pytest.mark.django_db

FOUR_HOURS = dt.timedelta(hours=4)


def user_in(role: str, name: str = "") -> User:
    user = User.objects.create_user(name or f"{role}-ack")
    if role != "nobody":
        user.groups.add(Group.objects.get(name=role))
    return User.objects.get(pk=user.pk)  # fresh permission cache


def open_one(subject: str = "emails") -> AlertIncident:
    verdict = rules.Verdict(
        rules.QUEUE_STUCK, subject, "stuck", words="342 waiting", fired=("no_consumer",)
    )
    incident = open_incident(verdict, timezone.now())
    assert incident is not None
    return incident


def test_acknowledge_sets_who_when_note_and_silence():
    incident = open_one()
    operator = user_in("operator", "olga")
    before = timezone.now()
    result = incident_acknowledge(
        user=operator, incident_id=incident.pk, note="restarting workers", silence_for=FOUR_HOURS
    )
    row = AlertIncident.objects.get(pk=incident.pk)
    assert result.done
    assert row.acknowledged_by == operator
    assert row.acknowledge_note == "restarting workers"
    assert row.acknowledged_at is not None and row.acknowledged_at >= before
    assert row.silenced_until == row.acknowledged_at + FOUR_HOURS
    assert row.details["acknowledged"] == {"fired": ["no_consumer"], "state": "stuck"}


def test_acknowledge_is_audited_with_the_incident_as_scope():
    incident = open_one()
    incident_acknowledge(
        user=user_in("operator", "olga"), incident_id=incident.pk, note="on it",
        silence_for=FOUR_HOURS,
    )  # fmt: skip
    action = OperatorAction.objects.get()
    assert (action.kind, action.outcome, action.username) == ("acknowledge", "done", "olga")
    assert action.scope == f"incident {incident.pk}: queue emails stuck"
    assert action.reason == "on it"
    assert action.message == "Acknowledged queue emails stuck: no reminder for 4 hours."


def test_acknowledge_by_a_viewer_is_refused_audited_and_changes_nothing():
    incident = open_one()
    result = incident_acknowledge(
        user=user_in("viewer", "vera"), incident_id=incident.pk, note="x", silence_for=FOUR_HOURS
    )
    assert not result.permitted
    assert AlertIncident.objects.get(pk=incident.pk).silenced_until is None
    action = OperatorAction.objects.get()
    assert (action.outcome, action.message) == ("refused", "vera may not acknowledge incidents.")


def test_a_refused_acknowledgement_with_a_nul_in_its_note_is_still_audited():
    incident = open_one()
    result = incident_acknowledge(
        user=user_in("viewer", "vera"), incident_id=incident.pk, note="on\x00it",
        silence_for=FOUR_HOURS,
    )  # fmt: skip
    assert not result.permitted
    assert OperatorAction.objects.get().reason == "onit"  # PostgreSQL text holds no NUL


def test_acknowledge_of_a_resolved_incident_is_refused_and_audited():
    incident = open_one()
    resolve(incident, timezone.now(), None)
    result = incident_acknowledge(
        user=user_in("operator"), incident_id=incident.pk, note="late", silence_for=FOUR_HOURS
    )
    assert not result.done
    assert AlertIncident.objects.get(pk=incident.pk).acknowledged_at is None
    assert OperatorAction.objects.get().message == (
        "Refused: it has recovered; a new one opens if it happens again."
    )


def test_acknowledge_needs_a_note():
    incident = open_one()
    with pytest.raises(AcknowledgeInputError):
        incident_acknowledge(
            user=user_in("operator"), incident_id=incident.pk, note="  ", silence_for=FOUR_HOURS
        )
    assert OperatorAction.objects.count() == 0


def test_acknowledge_only_offers_the_listed_silences():
    incident = open_one()
    with pytest.raises(AcknowledgeInputError):
        incident_acknowledge(
            user=user_in("operator"), incident_id=incident.pk, note="x",
            silence_for=dt.timedelta(days=30),
        )  # fmt: skip
    assert AlertIncident.objects.get(pk=incident.pk).silenced_until is None


def test_acknowledge_again_replaces_note_and_silence():
    incident = open_one()
    operator = user_in("operator")
    incident_acknowledge(
        user=operator, incident_id=incident.pk, note="first", silence_for=FOUR_HOURS
    )
    incident_acknowledge(
        user=operator, incident_id=incident.pk, note="second", silence_for=dt.timedelta(hours=1)
    )
    row = AlertIncident.objects.get(pk=incident.pk)
    assert row.acknowledge_note == "second"
    assert row.silenced_until == row.acknowledged_at + dt.timedelta(hours=1)
    assert OperatorAction.objects.filter(outcome="done").count() == 2

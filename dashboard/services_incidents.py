"""Acknowledging an incident: someone is on it, so no reminder mail for a chosen time.

The same steps as every operator action (``dashboard.services``): permission → state check at write
time (the row read under lock) → audit, refusals included. The opened and recovery mails are never
silenced; a check that finds the incident worse lifts the silence (``dashboard.alerts.incidents``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from dashboard.alerts.incidents import ACKNOWLEDGED_KEY, RESUMED_KEY, STATE_KEY
from dashboard.audit_scope import incident_scope
from dashboard.models import AlertIncident, OperatorAction

PERMISSION: Final = "dashboard.acknowledge_alertincident"
# The silences offered, longest last: long enough to fix it, short enough not to forget it.
SILENCES: Final[dict[str, dt.timedelta]] = {
    "1h": dt.timedelta(hours=1),
    "4h": dt.timedelta(hours=4),
    "24h": dt.timedelta(hours=24),
}
MAX_NOTE: Final = 500  # AlertIncident.acknowledge_note

Kind = OperatorAction.Kind
Outcome = OperatorAction.Outcome


class AcknowledgeInputError(ValueError):
    """The request itself is unusable (no note, a silence not offered): nothing was attempted."""


@dataclass(frozen=True)
class AcknowledgeResult:
    action: OperatorAction
    incident: AlertIncident | None
    permitted: bool = True

    @property
    def done(self) -> bool:
        return self.action.outcome == Outcome.DONE

    @property
    def message(self) -> str:
        return self.action.message


def clean_note(note: str) -> str:
    note = (note or "").strip()
    if not note:
        raise AcknowledgeInputError("Say what is being done: a note is required.")
    if len(note) > MAX_NOTE:
        raise AcknowledgeInputError(f"The note is longer than {MAX_NOTE} characters.")
    if "\x00" in note:
        raise AcknowledgeInputError("The note contains a NUL character.")
    return note


def _audit(*, user: User, note: str, outcome: str, message: str, scope: str) -> OperatorAction:
    return OperatorAction.objects.create(
        user=user,
        username=user.get_username(),
        kind=Kind.ACKNOWLEDGE,
        scope=scope,
        reason=note,
        outcome=outcome,
        message=message,
    )


def _hours(silence_for: dt.timedelta) -> str:
    hours = round(silence_for.total_seconds() / 3600)
    return f"{hours} hour{'s' if hours != 1 else ''}"


def incident_acknowledge(
    *, user: User, incident_id: int, note: str, silence_for: dt.timedelta
) -> AcknowledgeResult:
    """Acknowledge an open incident: no reminder mail until now + ``silence_for``.

    Acknowledging again replaces the note and the silence (from now). A resolved or unknown
    incident is refused, and so is a person without the permission; both are audited.
    """
    if silence_for not in SILENCES.values():
        raise AcknowledgeInputError("Choose how long to silence reminders: 1, 4 or 24 hours.")
    if not user.has_perm(PERMISSION):
        headline = (
            AlertIncident.objects.filter(pk=incident_id).values_list("rule", "subject").first()
        )
        action = _audit(
            user=user, note=(note or "").replace("\x00", "").strip()[:MAX_NOTE] or "(none)",
            outcome=Outcome.REFUSED,
            message=f"{user.get_username()} may not acknowledge incidents.",
            scope=incident_scope(incident_id, _headline(headline)),
        )  # fmt: skip
        return AcknowledgeResult(action=action, incident=None, permitted=False)
    note = clean_note(note)
    now = timezone.now()
    with transaction.atomic():
        incident = AlertIncident.objects.select_for_update().filter(pk=incident_id).first()
        scope = incident_scope(incident_id, incident.headline if incident else "unknown")
        if incident is None or not incident.is_open:
            why = "it has recovered" if incident is not None else "no such incident"
            action = _audit(
                user=user, note=note, outcome=Outcome.REFUSED,
                message=f"Refused: {why}; a new one opens if it happens again.", scope=scope,
            )  # fmt: skip
            return AcknowledgeResult(action=action, incident=incident)
        details = dict(incident.details or {})
        details.pop(RESUMED_KEY, None)
        details[ACKNOWLEDGED_KEY] = {
            "fired": list(details.get("fired") or []),
            STATE_KEY: details.get(STATE_KEY, "stuck"),
        }
        incident.acknowledged_at = now
        incident.acknowledged_by = user
        incident.acknowledge_note = note
        incident.silenced_until = now + silence_for
        incident.details = details
        incident.save(
            update_fields=[
                "acknowledged_at", "acknowledged_by", "acknowledge_note", "silenced_until",
                "details",
            ]
        )  # fmt: skip
        action = _audit(
            user=user, note=note, outcome=Outcome.DONE, scope=scope,
            message=f"Acknowledged {incident.headline}: no reminder for {_hours(silence_for)}.",
        )  # fmt: skip
    return AcknowledgeResult(action=action, incident=incident)


def _headline(rule_subject: tuple[str, str] | None) -> str:
    if rule_subject is None:
        return "unknown"
    return AlertIncident(rule=rule_subject[0], subject=rule_subject[1]).headline

"""Clearing a task's identity conflict: an admin has checked the task and says it may be retried.

The monitor records an event that disagreed with the task's first publish (or a forged outcome
after a SUCCESS) on the row (``dashboard.ingest.merge``), and a retry is refused while it is there.
This is the one way to lift that, in the steps of every operator action (``dashboard.services``):
the reason is checked first, then the permission, then the state at write time (the row read under
lock), then the audit row (a target: the task), then the write. Refusals are audited too, counted
past the limit like the other actions'.

Clearing does not make the monitor forget: the conflict is a join of the task's events, so a
disagreeing event that arrives afterwards (a new one, or one delivered again) records it anew.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from django.contrib.auth.models import User
from django.db import transaction

from dashboard.models import OperatorAction, TaskRun
from dashboard.services import _audit, _audit_refusal, clean_reason

PERMISSION: Final = "dashboard.clear_identity_conflict"
CONFLICT_COLUMNS: Final = ("identity_conflict_key", "identity_conflict_field", "identity_conflict")

Kind = OperatorAction.Kind
Outcome = OperatorAction.Outcome


@dataclass(frozen=True)
class ClearResult:
    action: OperatorAction
    permitted: bool = True

    @property
    def done(self) -> bool:
        return self.action.outcome == Outcome.DONE

    @property
    def message(self) -> str:
        return self.action.message


def _described(task: TaskRun) -> str:
    field = task.identity_conflict_field or "?"
    said = (task.identity_conflict or "")[:200]
    return f"{field}: the other event said {said!r}"


def task_conflict_clear(*, user: User, task_id: str, reason: str) -> ClearResult:
    """Null the task's ``identity_conflict_*`` columns; audited with the conflict that was cleared.

    Raises ``dashboard.services.ActionInputError`` for an unusable reason (before anything else)."""
    reason = clean_reason(reason)
    if not user.has_perm(PERMISSION):
        action = _audit_refusal(
            user=user, kind=Kind.CLEAR_CONFLICT, reason=reason,
            message=f"{user.get_username()} may not clear identity conflicts.",
            targets=[(task_id, Outcome.REFUSED, "not permitted")], bulk=False, scope="",
        )  # fmt: skip
        return ClearResult(action=action, permitted=False)
    with transaction.atomic():
        task = (
            TaskRun.objects.filter(task_id=task_id)
            .only("task_id", *CONFLICT_COLUMNS)
            .select_for_update()
            .first()
        )
        if task is None or task.identity_conflict_key is None:
            why = "no such task" if task is None else "the task has no identity conflict"
            action = _audit(
                user=user, kind=Kind.CLEAR_CONFLICT, reason=reason, outcome=Outcome.REFUSED,
                message=f"Refused: {why}.", targets=[(task_id, Outcome.REFUSED, why)],
            )  # fmt: skip
            return ClearResult(action=action)
        cleared = _described(task)
        action = _audit(
            user=user, kind=Kind.CLEAR_CONFLICT, reason=reason, outcome=Outcome.DONE,
            message=f"Cleared the identity conflict ({cleared}); the task may be retried.",
            targets=[(task_id, Outcome.DONE, cleared)],
        )  # fmt: skip
        TaskRun.objects.filter(task_id=task_id).update(**dict.fromkeys(CONFLICT_COLUMNS))
    return ClearResult(action=action)

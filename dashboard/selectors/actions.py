"""Audit reads: the actions on one task, the audit page, one action with the tasks it touched."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Case, Count, IntegerField, QuerySet, Value, When

from dashboard.audit_scope import incident_id_in_scope
from dashboard.models import OperatorAction, OperatorActionTarget

AUDIT_PAGE = 100
ACTION_TARGETS_SHOWN = 1000  # a bulk action touches up to TASKTRAIL_BULK_HARD_CAP tasks


def actions_on_task(*, task_id: str) -> list[OperatorActionTarget]:
    return list(
        OperatorActionTarget.objects.filter(task_id=task_id)
        .select_related("action")
        .order_by("-action__at")[:50]
    )


@dataclass(frozen=True)
class AuditRow:
    """One audit row and where its scope leads: a single action's task, an acknowledged
    incident, or (bulk) the action's own page listing its targets."""

    action: OperatorAction
    task_id: str | None = None
    incident_id: int | None = None


@dataclass(frozen=True)
class AuditPage:
    actions: list[OperatorAction]
    usernames: list[str]
    rows: list[AuditRow]


def _rows(actions: list[OperatorAction]) -> list[AuditRow]:
    """Two queries whatever the page holds: the actions, then the one target of each single one."""
    single = [a.pk for a in actions if not a.bulk and a.kind != OperatorAction.Kind.ACKNOWLEDGE]
    task_of = dict(
        OperatorActionTarget.objects.filter(action_id__in=single)
        .order_by("id")
        .values_list("action_id", "task_id")
    )
    rows = []
    for action in actions:
        incident_id = None
        if action.kind == OperatorAction.Kind.ACKNOWLEDGE:
            incident_id = incident_id_in_scope(action.scope)
        rows.append(AuditRow(action, task_of.get(action.pk), incident_id))
    return rows


def audit_log(*, username: str = "", kind: str = "", before_id: int | None = None) -> AuditPage:
    qs: QuerySet[OperatorAction] = OperatorAction.objects.all()
    if username:
        qs = qs.filter(username=username)
    if kind:
        qs = qs.filter(kind=kind)
    if before_id:
        qs = qs.filter(id__lt=before_id)
    usernames = list(
        OperatorAction.objects.order_by("username").values_list("username", flat=True).distinct()
    )
    actions = list(qs.order_by("-id")[:AUDIT_PAGE])
    return AuditPage(actions=actions, usernames=usernames, rows=_rows(actions))


@dataclass(frozen=True)
class ActionTargets:
    action: OperatorAction
    incident_id: int | None
    targets: list[OperatorActionTarget]  # at most ACTION_TARGETS_SHOWN, refused and failed first
    total: int
    by_outcome: dict[str, int]  # outcome label -> tasks

    @property
    def cut(self) -> bool:
        return self.total > len(self.targets)


_OUTCOME_ORDER = ["refused", "failed", "pending", "partial", "done"]


def audit_action(*, action_id: int) -> ActionTargets | None:
    """One action and the tasks it touched, for support: which ones, and what happened to each."""
    action = OperatorAction.objects.filter(pk=action_id).first()
    if action is None:
        return None
    targets = OperatorActionTarget.objects.filter(action=action)
    counts = dict(targets.values("outcome").annotate(n=Count("id")).values_list("outcome", "n"))
    labels = dict(OperatorAction.Outcome.choices)
    first = Case(
        *(When(outcome=o, then=Value(n)) for n, o in enumerate(_OUTCOME_ORDER)),
        default=Value(0),
        output_field=IntegerField(),
    )
    rows = list(targets.order_by(first, "id")[:ACTION_TARGETS_SHOWN])
    incident_id = (
        incident_id_in_scope(action.scope)
        if action.kind == OperatorAction.Kind.ACKNOWLEDGE
        else None
    )
    return ActionTargets(
        action=action,
        incident_id=incident_id,
        targets=rows,
        total=sum(counts.values()),
        by_outcome={labels.get(k, k): counts[k] for k in _OUTCOME_ORDER if k in counts},
    )

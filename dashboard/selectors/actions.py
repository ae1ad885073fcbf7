"""Audit reads: the actions on one task, and the audit page."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet

from dashboard.models import OperatorAction, OperatorActionTarget

AUDIT_PAGE = 100


def actions_on_task(*, task_id: str) -> list[OperatorActionTarget]:
    return list(
        OperatorActionTarget.objects.filter(task_id=task_id)
        .select_related("action")
        .order_by("-action__at")[:50]
    )


@dataclass(frozen=True)
class AuditPage:
    actions: list[OperatorAction]
    usernames: list[str]


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
    return AuditPage(actions=list(qs.order_by("-id")[:AUDIT_PAGE]), usernames=usernames)

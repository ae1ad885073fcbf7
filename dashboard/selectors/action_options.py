"""Which operator actions can succeed on a task, and why not: one set of rules for the task page,
the bulk confirmation page and the service that acts, so what is offered is what will be done.

The service (``dashboard.services``) applies these same functions to the rows it locks; the pages
apply them to the rows they read, and show the reason instead of a form that would be refused.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from django.contrib.auth.models import AnonymousUser, User

from dashboard.models import (
    CANCELLABLE_STATES,
    RETRYABLE_STATES,
    TERMINABLE_STATES,
    OperatorAction,
    TaskRun,
)
from dashboard.selectors.catalog import TaskCatalog, task_catalog

Kind = OperatorAction.Kind

PERMISSIONS: Final = {
    Kind.RETRY: "dashboard.retry_taskrun",
    Kind.CANCEL: "dashboard.cancel_taskrun",
    Kind.TERMINATE: "dashboard.terminate_taskrun",
}
# The columns the rules read.
RULE_FIELDS: Final = (
    "task_id", "name", "state", "args", "kwargs", "args_dropped", "retried_as",
    "cancel_requested_at", "terminate_requested_at",
)  # fmt: skip
_STATES: Final = {
    Kind.RETRY: RETRYABLE_STATES,
    Kind.CANCEL: CANCELLABLE_STATES,
    Kind.TERMINATE: TERMINABLE_STATES,
}


def retry_precheck(catalog: TaskCatalog, task: TaskRun) -> str | None:
    """Refusals that do not depend on the row's state: no recent worker of the shop has the task
    (workers report their registered tasks when they start, and every few minutes after), or the
    task opted out of operator retries."""
    if not task.name:
        return "its task name was not recorded"
    known = catalog.get(task.name)
    if known is None:
        return (
            f"no recent worker of this shop has registered {task.name} "
            f"(workers report their tasks when they start){_last_seen(catalog, task.name)}"
        )
    if not known.retryable:
        return f"{task.name} opts out of operator retries (not idempotent)"
    return None


def _last_seen(catalog: TaskCatalog, name: str) -> str:
    last = catalog.last_reported(name)
    if last is None:
        return ""
    days = max(0, int((catalog.now - last).total_seconds() // 86400))
    return f"; last reported {days} day{'s' if days != 1 else ''} ago"


def claimable(kind: str, task: TaskRun) -> bool:
    """The row allows the action now (the service's compare-and-swap condition, in Python)."""
    if kind == Kind.RETRY:
        return (
            task.state in RETRYABLE_STATES
            and task.retried_as is None
            and task.args is not None
            and task.kwargs is not None
        )
    if kind == Kind.CANCEL:
        return task.state in CANCELLABLE_STATES and task.cancel_requested_at is None
    return task.state in TERMINABLE_STATES and task.terminate_requested_at is None


def refusal_reason(kind: str, task: TaskRun | None) -> str:
    """Why a row that is not ``claimable`` refuses the action."""
    if task is None:
        return "no task with this id has been recorded"
    if kind == Kind.RETRY:
        if task.retried_as:
            return f"already retried as {task.retried_as}"
        if task.state in TERMINABLE_STATES and task.terminate_requested_at:
            return "a terminate was requested; it can be retried once its worker reports it stopped"
        if task.state not in RETRYABLE_STATES:
            return (
                f"a {task.state} task cannot be retried (only failed, revoked, rejected or lost "
                "ones)"
            )
        if task.args is None or task.kwargs is None:
            why = task.args_dropped or "not recorded"
            return f"its arguments were not kept ({why})"
    if kind == Kind.CANCEL:
        if task.cancel_requested_at:
            return "a cancel was already requested"
        if task.state not in CANCELLABLE_STATES:
            return f"a {task.state} task cannot be cancelled (only tasks that have not started)"
    if kind == Kind.TERMINATE:
        if task.terminate_requested_at:
            return "a terminate was already requested"
        if task.state not in TERMINABLE_STATES:
            return f"a {task.state} task is not running"
    return "the task changed meanwhile; reload and try again"


def why_not(kind: str, task: TaskRun | None, catalog: TaskCatalog | None) -> str | None:
    """None when ``kind`` would succeed on ``task`` as read, else the reason it is refused.

    ``catalog`` is needed for retries (which task names the shop's workers have, which opt out)."""
    if kind == Kind.RETRY and catalog is not None and task is not None:
        why = retry_precheck(catalog, task)
        if why is not None:
            return why
    if task is None or not claimable(kind, task):
        return refusal_reason(kind, task)
    return None


# -- the task page ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ActionOption:
    kind: str
    why_not: str | None  # None: offered

    @property
    def offered(self) -> bool:
        return self.why_not is None


def task_action_options(
    *, user: User | AnonymousUser, task: TaskRun, catalog: TaskCatalog | None = None
) -> dict[str, ActionOption]:
    """The actions this user may take on this task, by kind: offered, or the reason they are not.

    Only kinds the user's role allows; cancel and terminate only while the task is in (or just
    left) their states, so a finished task does not list every action it cannot take. Retry is
    always listed: why a task cannot be run again is what people ask.
    """
    options: dict[str, ActionOption] = {}
    for kind in (Kind.RETRY, Kind.CANCEL, Kind.TERMINATE):
        if not user.has_perm(PERMISSIONS[kind]):
            continue
        requested = task.cancel_requested_at if kind == Kind.CANCEL else None
        if kind == Kind.TERMINATE:
            requested = task.terminate_requested_at
        relevant = kind == Kind.RETRY or task.state in _STATES[kind] or requested is not None
        if not relevant:
            continue
        if kind == Kind.RETRY and catalog is None:
            catalog = task_catalog()
        options[kind] = ActionOption(kind, why_not(kind, task, catalog))
    return options


# -- bulk confirmation ------------------------------------------------------------------------


@dataclass(frozen=True)
class BulkPreview:
    acted_on: int  # tasks the action will be taken on
    refused: list[tuple[str, int]]  # (reason, how many), most common first

    @property
    def refused_count(self) -> int:
        return sum(count for _, count in self.refused)


_PREVIEW_CHUNK: Final = 500


def bulk_preview(*, kind: str, task_ids: Sequence[str]) -> BulkPreview:
    """How many of ``task_ids`` the action would be taken on; why the others would be refused."""
    catalog = task_catalog() if kind == Kind.RETRY else None
    reasons: Counter[str] = Counter()
    acted_on = 0
    for start in range(0, len(task_ids), _PREVIEW_CHUNK):
        chunk = list(task_ids[start : start + _PREVIEW_CHUNK])
        rows = {t.task_id: t for t in TaskRun.objects.filter(task_id__in=chunk).only(*RULE_FIELDS)}
        if catalog is not None:
            catalog.load(t.name for t in rows.values())
        for task_id in chunk:
            why = why_not(kind, rows.get(task_id), catalog)
            if why is None:
                acted_on += 1
            else:
                reasons[_grouped(why)] += 1
    return BulkPreview(acted_on=acted_on, refused=reasons.most_common())


def _grouped(why: str) -> str:
    """One line per kind of reason: "already retried as <id>" names a different id per task."""
    return "already retried" if why.startswith("already retried as ") else why

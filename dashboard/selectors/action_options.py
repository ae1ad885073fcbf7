"""Which operator actions can succeed on a task, and why not: one set of rules for the task page,
the bulk confirmation page and the service that acts, so what is offered is what will be done.

The service (``dashboard.services``) applies these same functions to the rows it locks; the pages
apply them to the rows they read, and show the reason instead of a form that would be refused.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User

from dashboard.models import (
    CANCELLABLE_STATES,
    RETRYABLE_STATES,
    TERMINABLE_STATES,
    OperatorAction,
    TaskRun,
)
from dashboard.selectors.catalog import TaskCatalog, task_catalog
from dashboard.selectors.retry_call import NameLookup, RetryCall, carried_tasks, retry_call

Kind = OperatorAction.Kind
BUILTIN_PREFIX: Final = "celery."

PERMISSIONS: Final = {
    Kind.RETRY: "dashboard.retry_taskrun",
    Kind.CANCEL: "dashboard.cancel_taskrun",
    Kind.TERMINATE: "dashboard.terminate_taskrun",
}
# The columns the rules read.
RULE_FIELDS: Final = (
    "task_id", "name", "state", "args", "kwargs", "args_dropped", "retried_as",
    "cancel_requested_at", "terminate_requested_at", "identity_conflict_key",
)  # fmt: skip
_STATES: Final = {
    Kind.RETRY: RETRYABLE_STATES,
    Kind.CANCEL: CANCELLABLE_STATES,
    Kind.TERMINATE: TERMINABLE_STATES,
}


def retry_precheck(catalog: TaskCatalog, task: TaskRun) -> str | None:
    """Refusals that do not depend on the row's state: the task is one of Celery's built-ins, no
    recent worker of the shop has the task (workers report their registered tasks when they start,
    and every few minutes after), the task opted out of operator retries, or, with
    ``TASKTRAIL_RETRY=declared``, it did not opt in."""
    if not task.name:
        return "its task name was not recorded"
    if task.name.startswith(BUILTIN_PREFIX):
        # map, starmap, chunks, chain, chord… run whatever task their arguments name: retrying
        # one would run a task the catalog's checks never saw, with arguments nobody reviewed.
        return (
            f"{task.name} is one of Celery's built-in tasks, which run other tasks named in "
            "their arguments; operators never retry them"
        )
    known = catalog.get(task.name)
    if known is None:
        return (
            f"no recent worker of this shop has registered {task.name} "
            f"(workers report their tasks when they start){_last_seen(catalog, task.name)}"
        )
    if not known.retryable:
        return f"{task.name} opts out of operator retries (not idempotent)"
    if settings.TASKTRAIL_RETRY == "declared" and not known.declared_retryable:
        return (
            f"{task.name} does not declare tasktrail_retryable = True, and only tasks that do "
            "are retried here (TASKTRAIL_RETRY=declared)"
        )
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

    ``catalog`` is what retries are checked against (which task names the shop's workers have,
    which opt out); one is read when none is given, so no retry goes unchecked."""
    if kind == Kind.RETRY and task is not None:
        why = retry_precheck(catalog if catalog is not None else task_catalog(), task)
        if why is not None:
            return why
    if task is None or not claimable(kind, task):
        return refusal_reason(kind, task)
    if kind == Kind.RETRY and task.identity_conflict_key is not None:
        return IDENTITY_CONFLICT
    if kind == Kind.RETRY:
        return unreadable_arguments(task)
    return None


# A later event disagreed with the task's first publish (dashboard.ingest.merge): what a retry
# would send may not be what was first asked for.
IDENTITY_CONFLICT: Final = (
    "identity conflict: an event disagreed with the task's first publish; not retryable until an "
    "admin clears it"
)


def unreadable_arguments(task: TaskRun) -> str | None:
    """Why the recorded arguments cannot be sent as a call (what cannot be shown is not sent)."""
    try:
        args, kwargs = json.loads(task.args or ""), json.loads(task.kwargs or "")
    except (ValueError, TypeError, RecursionError):
        return "its recorded arguments are not valid JSON"
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        return "its recorded arguments are not a list and a map"
    return None


# -- the task page ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ActionOption:
    kind: str
    why_not: str | None  # None: offered
    call: RetryCall | None = None  # a retry offered: the exact call it sends, to confirm

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
        why = why_not(kind, task, catalog)
        call = None
        if kind == Kind.RETRY and why is None and catalog is not None:
            call = retry_call(task, catalog)
        options[kind] = ActionOption(kind, why, call)
    return options


# -- bulk confirmation ------------------------------------------------------------------------


@dataclass(frozen=True)
class BulkPreview:
    acted_on: int  # tasks the action will be taken on
    refused: list[tuple[str, int]]  # (reason, how many), most common first
    names: list[tuple[str, int]] = field(default_factory=list)  # acted on, by task name
    calls: list[tuple[str, RetryCall]] = field(default_factory=list)  # retry: (task id, call)
    signature_count: int = 0  # retries whose arguments carry another task to run

    @property
    def refused_count(self) -> int:
        return sum(count for _, count in self.refused)

    @property
    def calls_not_shown(self) -> int:
        return self.acted_on - len(self.calls)


_PREVIEW_CHUNK: Final = 500
# Retries whose exact call the bulk confirmation lists; the rest are counted by task name.
PREVIEW_CALLS: Final = 50


def bulk_preview(*, kind: str, task_ids: Sequence[str]) -> BulkPreview:
    """How many of ``task_ids`` the action would be taken on; why the others would be refused."""
    catalog = task_catalog() if kind == Kind.RETRY else None
    reasons: Counter[str] = Counter()
    names: Counter[str] = Counter()
    calls: list[tuple[str, RetryCall]] = []
    carrying: list[tuple[str, RetryCall]] = []  # listed first: they run more than their name
    signature_count = 0
    lookup = NameLookup(catalog) if catalog is not None else None
    fields = (*RULE_FIELDS, "queue", "arg_names") if kind == Kind.RETRY else RULE_FIELDS
    for start in range(0, len(task_ids), _PREVIEW_CHUNK):
        chunk = list(task_ids[start : start + _PREVIEW_CHUNK])
        # Retries read the arguments too: each call is checked for the tasks it carries.
        rows = {t.task_id: t for t in TaskRun.objects.filter(task_id__in=chunk).only(*fields)}
        if catalog is not None:
            catalog.load(t.name for t in rows.values())
        for task_id in chunk:
            task = rows.get(task_id)
            why = why_not(kind, task, catalog)
            if why is not None or task is None:
                reasons[_grouped(why or "")] += 1
                continue
            names[task.name or ""] += 1
            if catalog is not None:
                carried = bool(carried_tasks(task))
                signature_count += carried
                listed = carrying if carried else calls
                if len(listed) < PREVIEW_CALLS:
                    listed.append((task_id, retry_call(task, catalog, lookup=lookup)))
    return BulkPreview(
        acted_on=sum(names.values()),
        refused=reasons.most_common(),
        names=names.most_common(),
        calls=(carrying + calls)[:PREVIEW_CALLS],
        signature_count=signature_count,
    )


def _grouped(why: str) -> str:
    """One line per kind of reason: "already retried as <id>" names a different id per task."""
    return "already retried" if why.startswith("already retried as ") else why

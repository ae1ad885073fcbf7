"""Writes made on behalf of a person: operator actions on tasks, API tokens.

Every action runs the same steps: permission → state check at write time → audit → the Celery call
after the transaction commits → outcome on the audit row. The state check's rules live in
``dashboard.selectors.action_options``, which the pages use to offer only what will succeed. The
check is a compare-and-swap on the task rows, read under lock (``_claim_chunk``), so two clicks or
two operators, single or bulk, produce exactly one retry. Refusals are audited too. The Celery
calls go to the shop's broker (``workers.control``); one that does not reach it is audited as
failed with the reason and its claim released, so the row never claims what did not happen.

A bulk action of thousands of tasks stays a handful of statements: the task catalog is read once
per request, and every step works on chunks of ``CHUNK`` tasks (one SELECT … FOR UPDATE and one
UPDATE per chunk to claim, one UPDATE per chunk and outcome to record what happened).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import Case, CharField, F, Q, Value, When
from django.db.models.functions import Collate
from django.utils import timezone

from dashboard import refusals
from dashboard.filters import TaskFilter
from dashboard.models import (
    CANCELLABLE_STATES,
    RETRYABLE_STATES,
    TERMINABLE_STATES,
    ApiToken,
    OperatorAction,
    OperatorActionTarget,
    TaskAttempt,
    TaskRun,
)
from dashboard.redis_client import shared_client
from dashboard.selectors.action_options import PERMISSIONS, why_not
from dashboard.selectors.catalog import TaskCatalog, task_catalog
from dashboard.selectors.tasks import filtered_task_runs
from tasktrail import revocations
from tasktrail.tracing.context import TraceParent

logger = logging.getLogger("tasktrail.actions")

Kind = OperatorAction.Kind
Outcome = OperatorAction.Outcome

BULK_OVER_CAP: Final = "dashboard.bulk_over_cap"
BULK_KINDS: Final = (Kind.RETRY, Kind.CANCEL)
MAX_REASON: Final = 1000
# Characters a reason may not hold: control characters (a line break and a tab are fine) and the
# bidirectional overrides that make an audit row read other than it is.
_NOT_IN_REASON: Final = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
_TRACE_ID: Final = re.compile(r"[0-9a-f]{32}")
_SPAN_ID: Final = re.compile(r"[0-9a-f]{16}")
# Tasks per statement. A claim binds three parameters per task (its id in the IN list, its id and
# new id in the CASE); SQLite takes at most 999 per statement.
CHUNK: Final = 250
# The columns an action reads: its checks, its refusal reasons and its Celery calls.
_ACTION_FIELDS: Final = (
    "task_id", "name", "queue", "state", "args", "kwargs", "args_dropped", "retried_as",
    "cancel_requested_at", "terminate_requested_at", "trace_id", "trace_sampled",
    "identity_conflict_key",
)  # fmt: skip
# The compare-and-swap's condition: the task may be acted on, and nobody has yet.
_CLAIMABLE: Final[dict[str, Q]] = {
    Kind.RETRY: Q(
        state__in=RETRYABLE_STATES,
        retried_as__isnull=True,
        args__isnull=False,
        kwargs__isnull=False,
        identity_conflict_key__isnull=True,  # an admin clears a conflict first
    ),
    Kind.CANCEL: Q(state__in=CANCELLABLE_STATES, cancel_requested_at__isnull=True),
    Kind.TERMINATE: Q(state__in=TERMINABLE_STATES, terminate_requested_at__isnull=True),
}


class ActionInputError(ValueError):
    """The request itself is unusable (no reason, empty filter): nothing was attempted."""


@dataclass
class ActionResult:
    action: OperatorAction
    permitted: bool = True
    done: list[str] = field(default_factory=list)  # task ids acted on, reached the broker
    refused: dict[str, str] = field(default_factory=dict)  # task id -> why
    new_task_ids: dict[str, str] = field(default_factory=dict)  # retried id -> new id
    failed: dict[str, str] = field(default_factory=dict)  # task id -> why its call failed
    # What to tell the person when the audit row says something else (a refusal counted on the
    # row of refusals past the limit).
    note: str | None = None

    @property
    def message(self) -> str:
        return self.note if self.note is not None else self.action.message


# -- helpers ------------------------------------------------------------------------------------


def clean_reason(reason: str) -> str:
    """The reason as the audit row keeps it, or ``ActionInputError`` saying what is wrong with it.
    Checked before anything else, the permission included: no request stores a huge reason."""
    if not isinstance(reason, str):
        raise ActionInputError("Say why: a reason is required for every action.")
    if len(reason) > MAX_REASON + 100:  # before stripping: no copy of a huge text is made
        raise ActionInputError(
            f"The reason is {len(reason):,} characters long; keep it to {MAX_REASON:,}."
        )
    reason = reason.strip()
    if not reason:
        raise ActionInputError("Say why: a reason is required for every action.")
    if len(reason) > MAX_REASON:
        raise ActionInputError(
            f"The reason is {len(reason):,} characters long; keep it to {MAX_REASON:,}."
        )
    bad = _NOT_IN_REASON.search(reason)
    if bad is not None:
        raise ActionInputError(
            f"The reason holds a control character (U+{ord(bad.group()):04X}) at position "
            f"{bad.start() + 1}; use plain text."
        )
    return reason


def _audit(
    *,
    user: User,
    kind: str,
    reason: str,
    outcome: str,
    message: str,
    targets: Sequence[tuple[str, str, str]] = (),  # (task id, outcome, message)
    bulk: bool = False,
    scope: str = "",
) -> OperatorAction:
    action = OperatorAction.objects.create(
        user=user,
        username=user.get_username(),
        kind=kind,
        bulk=bulk,
        scope=scope,
        target_count=len(targets),
        reason=reason,
        outcome=outcome,
        message=message,
    )
    OperatorActionTarget.objects.bulk_create(
        OperatorActionTarget(action=action, task_id=t, outcome=o, message=m) for t, o, m in targets
    )
    return action


def _chunks(items: Sequence[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), CHUNK):
        yield list(items[start : start + CHUNK])


def _per_task(values: dict[str, str]) -> Case:
    """``CASE WHEN task_id = … THEN …``: a value of its own for each row of one UPDATE."""
    whens = [When(task_id=task_id, then=Value(value)) for task_id, value in values.items()]
    return Case(*whens, output_field=CharField())


@dataclass
class _Claims:
    tasks: dict[str, TaskRun] = field(default_factory=dict)  # claimed, by task id
    refused: dict[str, str] = field(default_factory=dict)  # task id -> why
    new_ids: dict[str, str] = field(default_factory=dict)  # retry: task id -> new task id


def _lock_order() -> Collate | F:
    """Rows are locked in task id order, by code point as Python sorts them: the order of the
    chunks, and the order the monitor's upserts lock rows in, so no two of them deadlock."""
    if connection.vendor == "postgresql":
        return Collate(F("task_id"), "C")  # the database's own collation may order otherwise
    return F("task_id")  # SQLite compares text byte by byte: UTF-8 keeps code point order


def _claim_chunk(
    kind: str, chunk: Sequence[str], catalog: TaskCatalog | None, now: dt.datetime, claims: _Claims
) -> None:
    """The compare-and-swap for up to ``CHUNK`` tasks: lock their rows, decide, claim in one UPDATE.

    The rows read here are the rows the UPDATE changes, so a task is claimed by this action and no
    other, and every refusal reason is read from the row that caused it: on PostgreSQL ``FOR
    UPDATE`` waits for a concurrent action (or monitor write) on a row to commit, then returns the
    row as committed and holds its lock until this transaction ends; on SQLite the transaction is
    ``IMMEDIATE``, so it holds the database's only write lock from its first statement on and no
    other writer commits in between. The UPDATE still carries the claim condition: should a row
    change regardless, it is left alone and the whole action is rolled back, never acted on twice.
    """
    rows = {
        task.task_id: task
        for task in TaskRun.objects.filter(task_id__in=chunk)
        .only(*_ACTION_FIELDS)
        .order_by(_lock_order())
        .select_for_update()
    }
    claimed: list[str] = []
    if catalog is not None:
        catalog.load(t.name for t in rows.values())
    for task_id in chunk:
        why = why_not(kind, rows.get(task_id), catalog)
        if why is not None:
            claims.refused[task_id] = why
            continue
        claimed.append(task_id)
        claims.tasks[task_id] = rows[task_id]
        if kind == Kind.RETRY:
            claims.new_ids[task_id] = str(uuid.uuid4())
            if catalog is not None and not rows[task_id].queue:  # sent there, never saved
                rows[task_id].queue = catalog.default_queue(rows[task_id].name)
    if not claimed:
        return
    claimable = TaskRun.objects.filter(_CLAIMABLE[kind], task_id__in=claimed)
    if kind == Kind.RETRY:
        count = claimable.update(retried_as=_per_task({t: claims.new_ids[t] for t in claimed}))
    elif kind == Kind.CANCEL:
        count = claimable.update(cancel_requested_at=now)
    else:
        count = claimable.update(terminate_requested_at=now)
    if count != len(claimed):
        raise RuntimeError(f"{kind}: {count} of {len(claimed)} locked rows could be claimed")


def _release(kind: str, task_ids: Sequence[str], new_ids: dict[str, str]) -> None:
    """Undo claims whose Celery call failed, so the action can be tried again."""
    for chunk in _chunks(task_ids):
        rows = TaskRun.objects.filter(task_id__in=chunk)
        if kind == Kind.RETRY:  # only our own claims: new ids are unique
            rows.filter(retried_as__in=[new_ids[t] for t in chunk]).update(retried_as=None)
        elif kind == Kind.CANCEL:
            rows.update(cancel_requested_at=None)
        else:
            rows.update(terminate_requested_at=None)


# -- the Celery calls, made after commit -----------------------------------------------------------


@dataclass
class _Calls:
    """What one action's Celery calls did, filled in after commit."""

    made: bool = False
    failed: dict[str, str] = field(default_factory=dict)  # task id -> why: not sent, claim released
    warned: dict[str, str] = field(default_factory=dict)  # task id -> caveat: sent, only in part


def _call_celery(
    kind: str, tasks: Sequence[TaskRun], new_ids: dict[str, str], calls: _Calls
) -> None:
    """Make the Celery calls, on the shop's broker; record each task's failure in ``calls``.

    Once the broker is unreachable the rest of the batch is not tried: each try could wait the
    connection timeout, and a thousand of them would hold the request for an hour."""
    from workers import control

    down: str | None = None  # why the broker is unreachable, once it is

    def failure(exc: Exception) -> str:
        nonlocal down
        if isinstance(exc, control.BrokerError):  # every broker error is one, already masked
            if exc.unreachable:
                down = str(exc)
            return str(exc)
        return control.mask(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)

    if kind == Kind.RETRY:
        traces = _original_traces(tasks)
        for task in tasks:
            if down is not None:
                calls.failed[task.task_id] = f"not sent: {down}"
                continue
            try:
                control.publish_retry(
                    name=task.name or "",
                    args=json.loads(task.args or "[]"),
                    kwargs=json.loads(task.kwargs or "{}"),
                    queue=task.queue,
                    retry_of=task.task_id,
                    task_id=new_ids[task.task_id],
                    original_trace=traces.get(task.task_id),
                )
            except Exception as exc:  # broker down, no such queue, arguments: on the audit row
                calls.failed[task.task_id] = f"publish failed: {failure(exc)}"
    elif kind == Kind.CANCEL:
        ids = [t.task_id for t in tasks]
        not_remembered = ""
        try:  # the durable half, in the event stream's Redis: workers started later read it
            revocations.remember(shared_client(), ids)
        except Exception as exc:
            detail = control.mask(f"{type(exc).__name__}: {exc}", settings.REDIS_URL)
            not_remembered = f"not remembered for workers started later ({detail})"
        try:
            control.broadcast_revoke(ids)
        except Exception as exc:
            why = f"revoke not sent, running workers were not told: {failure(exc)}; " + (
                not_remembered or "remembered for workers started later"
            )
            calls.failed.update(dict.fromkeys(ids, why))
        else:
            if not_remembered:
                calls.warned.update(dict.fromkeys(ids, f"running workers told; {not_remembered}"))
    else:
        for task in tasks:
            if down is not None:
                calls.failed[task.task_id] = f"not sent: {down}"
                continue
            try:
                control.terminate(task.task_id)
            except Exception as exc:
                calls.failed[task.task_id] = f"terminate failed: {failure(exc)}"


def _original_traces(tasks: Sequence[TaskRun]) -> dict[str, TraceParent]:
    """Per task id: trace id, span id of the last run span, sampled (for the retry's link)."""
    traced = {t.task_id: t for t in tasks if t.trace_id}
    spans: dict[str, str | None] = {}
    for chunk in _chunks(list(traced)):
        spans.update(
            TaskAttempt.objects.filter(task_id__in=chunk, span_id__isnull=False)
            .order_by("task_id", "attempt")
            .values_list("task_id", "span_id")
        )  # the last attempt's wins
    # The ids came in events, which anyone who can write the stream can forge: a malformed one
    # never stops a retry. No usable trace id: no link; no usable span id: the link names the
    # trace only, as for a task that never ran.
    no_span = "0" * 16
    links: dict[str, TraceParent] = {}
    for task_id, t in traced.items():
        trace_id = (t.trace_id or "").lower()
        if not _TRACE_ID.fullmatch(trace_id) or trace_id == "0" * 32:
            continue
        span_id = (spans.get(task_id) or "").lower()
        if not _SPAN_ID.fullmatch(span_id):
            span_id = no_span
        links[task_id] = TraceParent(trace_id, span_id, bool(t.trace_sampled))
    return links


def _record_outcomes(
    action: OperatorAction, done: Sequence[str], calls: _Calls, new_ids: dict[str, str]
) -> None:
    """The target rows' outcomes: one UPDATE per chunk of done tasks, per message and chunk."""
    targets = OperatorActionTarget.objects.filter(action=action)
    for chunk in _chunks(done):
        news = {t: new_ids[t] for t in chunk if t in new_ids}
        targets.filter(task_id__in=chunk).update(
            outcome=Outcome.DONE, new_task_id=_per_task(news) if news else None
        )
    for outcome, messages in ((Outcome.FAILED, calls.failed), (Outcome.PARTIAL, calls.warned)):
        by_message: dict[str, list[str]] = {}
        for task_id, message in messages.items():
            by_message.setdefault(message, []).append(task_id)
        for message, task_ids in by_message.items():
            for chunk in _chunks(task_ids):
                targets.filter(task_id__in=chunk).update(outcome=outcome, message=message)


def _after_commit(
    action: OperatorAction,
    kind: str,
    tasks: list[TaskRun],
    new_ids: dict[str, str],
    calls: _Calls,
    *,
    refused: bool,
) -> Callable[[], None]:
    def run() -> None:
        try:
            _call_celery(kind, tasks, new_ids, calls)
        except Exception as exc:  # never leave the audit row pending: what was not tried failed
            why = f"not sent: {type(exc).__name__}"
            calls.failed.update({t.task_id: why for t in tasks if t.task_id not in calls.failed})
            logger.exception("%s by %s: the Celery calls stopped", kind, action.username)
        calls.made = True
        failed, warned = calls.failed, calls.warned
        with transaction.atomic():
            _release(kind, list(failed), new_ids)  # so the action can be asked for again
            done = [t.task_id for t in tasks if t.task_id not in failed and t.task_id not in warned]
            _record_outcomes(action, done, calls, new_ids)
            if failed and len(failed) == len(tasks) and not refused:
                action.outcome = Outcome.FAILED
            elif failed or warned or refused:
                action.outcome = Outcome.PARTIAL
            else:
                action.outcome = Outcome.DONE
            if failed:
                first = next(iter(failed.values()))
                if len(tasks) == 1:
                    action.message += f" Failed: {first}"
                else:
                    sent = len(tasks) - len(failed)
                    action.message += (
                        f" {sent} of {len(tasks)} reached the broker; {len(failed)} failed: {first}"
                    )
            if warned:
                action.message += f" Sent, but {next(iter(warned.values()))}"
            action.save(update_fields=["outcome", "message"])
        if failed or warned:
            logger.warning(
                "%s by %s: %d of %d Celery calls failed, %d in part: %s",
                kind, action.username, len(failed), len(tasks), len(warned),
                next(iter({**failed, **warned}.values())),
            )  # fmt: skip

    return run


# -- actions ----------------------------------------------------------------------------------


def _act(
    *, user: User, kind: str, task_ids: Sequence[str], reason: str, bulk: bool, scope: str
) -> ActionResult:
    permission = PERMISSIONS[Kind(kind)]
    reason = clean_reason(reason)  # first: a refusal is audited, with the reason as given
    if not user.has_perm(permission):
        return _refuse_unpermitted(
            user=user, kind=kind, task_ids=task_ids, reason=reason, bulk=bulk, scope=scope
        )
    ids = list(dict.fromkeys(task_ids))
    # Once per request: the shop's task catalog, read as the rows ask for names.
    catalog = task_catalog() if kind == Kind.RETRY else None
    claims = _Claims()
    calls = _Calls()
    now = timezone.now()
    with transaction.atomic():
        for chunk in _chunks(sorted(ids)):  # see _lock_order
            _claim_chunk(kind, chunk, catalog, now, claims)
        result_done = [t for t in ids if t in claims.tasks]
        refused = {t: claims.refused[t] for t in ids if t in claims.refused}
        if result_done:
            verb = {"retry": "Retrying", "cancel": "Cancelling", "terminate": "Terminating"}[kind]
            message = f"{verb} {len(result_done)} task{'s' if len(result_done) != 1 else ''}."
            if refused:
                message += f" {len(refused)} refused: {next(iter(refused.values()))}."
            outcome = Outcome.PENDING
        else:
            message = f"Refused: {next(iter(refused.values()), 'nothing selected')}."
            outcome = Outcome.REFUSED
        targets = [(t, Outcome.PENDING, "") for t in result_done]
        targets += [(t, Outcome.REFUSED, why) for t, why in refused.items()]
        if result_done:
            action = _audit(
                user=user, kind=kind, reason=reason, outcome=outcome, message=message,
                targets=targets, bulk=bulk, scope=scope,
            )  # fmt: skip
        else:  # refused whole: counted past the limit, like a refusal for want of the role
            action = _audit_refusal(
                user=user, kind=kind, reason=reason, message=message, targets=targets,
                bulk=bulk, scope=scope,
            )  # fmt: skip
        if result_done:
            tasks = [claims.tasks[t] for t in result_done]
            transaction.on_commit(
                _after_commit(action, kind, tasks, claims.new_ids, calls, refused=bool(refused))
            )
    action.refresh_from_db()
    # The calls ran when the transaction committed; inside an outer transaction they run later.
    done = [t for t in result_done if t not in calls.failed] if calls.made else result_done
    new_ids = {t: claims.new_ids[t] for t in done if t in claims.new_ids}
    return ActionResult(
        action=action, done=done, refused=refused, new_task_ids=new_ids, failed=dict(calls.failed),
        note=None if result_done else message,
    )  # fmt: skip


def _refuse_unpermitted(
    *, user: User, kind: str, task_ids: Sequence[str], reason: str, bulk: bool, scope: str
) -> ActionResult:
    """Refuse for want of the role, audited as ``_audit_refusal`` does."""
    message = f"{user.get_username()} may not {kind} tasks."
    action = _audit_refusal(
        user=user, kind=kind, reason=reason, message=message,
        targets=[(t, Outcome.REFUSED, "not permitted") for t in task_ids], bulk=bulk, scope=scope,
    )  # fmt: skip
    return ActionResult(
        action=action, permitted=False, refused=dict.fromkeys(task_ids, ""), note=message
    )


def _audit_refusal(
    *, user: User, kind: str, reason: str, message: str,
    targets: Sequence[tuple[str, str, str]], bulk: bool, scope: str,
) -> OperatorAction:  # fmt: skip
    """The audit row of a refused action: one each, up to ``refusals.LIMIT`` a minute per person;
    past it one row for the rest of that minute, without reasons or targets, counting them."""
    count = refusals.count(user)
    if count is None or count.recorded:
        return _audit(
            user=user, kind=kind, reason=reason, outcome=Outcome.REFUSED, message=message,
            targets=targets, bulk=bulk, scope=scope,
        )  # fmt: skip
    counted = (
        f"{count.over} more refused action{'s' if count.over != 1 else ''} by "
        f"{user.get_username()} this minute, over the limit of {refusals.LIMIT} recorded one by "
        f"one, counted here only. The latest: {message}"
    )
    row_id = refusals.summary_row(user, count.window)
    summary = OperatorAction.objects.filter(pk=row_id).first() if row_id is not None else None
    if summary is None:
        summary = _audit(
            user=user, kind=kind, reason="(over the limit: reasons not recorded)",
            outcome=Outcome.REFUSED, message=counted, bulk=bulk, scope="",
        )  # fmt: skip
        refusals.remember_summary_row(user, count.window, summary.pk)
    else:
        summary.message = counted
        summary.save(update_fields=["message"])
    return summary


def task_run_retry(*, user: User, task_id: str, reason: str) -> ActionResult:
    return _act(user=user, kind=Kind.RETRY, task_ids=[task_id], reason=reason, bulk=False, scope="")


def task_run_cancel(*, user: User, task_id: str, reason: str) -> ActionResult:
    return _act(
        user=user, kind=Kind.CANCEL, task_ids=[task_id], reason=reason, bulk=False, scope=""
    )


def task_run_terminate(*, user: User, task_id: str, reason: str) -> ActionResult:
    return _act(
        user=user, kind=Kind.TERMINATE, task_ids=[task_id], reason=reason, bulk=False, scope=""
    )


@dataclass(frozen=True)
class BulkScope:
    """What a bulk action would touch: shown for confirmation, then acted on."""

    task_ids: list[str]
    description: str
    over_cap: bool
    cap: int


def bulk_scope(
    *, user: User, kind: str, task_ids: Sequence[str] = (), task_filter: TaskFilter | None = None
) -> BulkScope:
    """The exact tasks a bulk action would touch. Never everything: a selection or a filter."""
    if kind not in BULK_KINDS:
        raise ActionInputError("Bulk actions are retry and cancel.")
    cap = int(getattr(settings, "TASKTRAIL_BULK_CAP", 1000))
    hard_cap = int(getattr(settings, "TASKTRAIL_BULK_HARD_CAP", 20_000))
    limit = hard_cap if user.has_perm(BULK_OVER_CAP) else cap
    if task_ids:
        ids = list(dict.fromkeys(task_ids))
        description = f"{len(ids)} selected task{'s' if len(ids) != 1 else ''}"
    elif task_filter is not None and not task_filter.is_empty:
        states = RETRYABLE_STATES if kind == Kind.RETRY else CANCELLABLE_STATES
        qs = filtered_task_runs(task_filter).filter(state__in=states)
        ids = list(
            qs.order_by("-first_seen_at", "-id").values_list("task_id", flat=True)[: limit + 1]
        )
        description = f"tasks matching {task_filter.describe()}"
    else:
        raise ActionInputError(
            "Choose tasks or set a filter: a bulk action never runs on everything."
        )
    return BulkScope(
        task_ids=ids[: limit + 1], description=description, over_cap=len(ids) > limit, cap=limit
    )


def task_runs_bulk(
    *,
    user: User,
    kind: str,
    reason: str,
    task_ids: Sequence[str] = (),
    task_filter: TaskFilter | None = None,
    expected_count: int | None = None,
) -> ActionResult:
    """Retry or cancel many tasks; one audit row for the batch, a target row per task.

    The reason and the permission are checked before the selection is read: someone without the
    role learns nothing of the tasks (how many match, which can be acted on)."""
    reason = clean_reason(reason)
    if kind not in BULK_KINDS:
        raise ActionInputError("Bulk actions are retry and cancel.")
    if not user.has_perm(PERMISSIONS[Kind(kind)]):
        ids = list(dict.fromkeys(task_ids))[: int(settings.TASKTRAIL_BULK_CAP)]
        if ids:
            described = f"{len(ids)} selected task{'s' if len(ids) != 1 else ''}"
        else:
            described = f"tasks matching {task_filter.describe() if task_filter else 'nothing'}"
        return _refuse_unpermitted(
            user=user, kind=kind, task_ids=ids, reason=reason, bulk=True, scope=described
        )
    scope = bulk_scope(user=user, kind=kind, task_ids=task_ids, task_filter=task_filter)
    if scope.over_cap:
        raise ActionInputError(
            f"More than {scope.cap} tasks match; narrow the filter"
            + ("" if user.has_perm(BULK_OVER_CAP) else " (or ask an admin)")
            + "."
        )
    if expected_count is not None and expected_count != len(scope.task_ids):
        raise ActionInputError(
            f"The selection changed since you confirmed ({expected_count} then, "
            f"{len(scope.task_ids)} now). Review it again."
        )
    if not scope.task_ids:
        raise ActionInputError("No task in this selection can be acted on.")
    return _act(
        user=user, kind=kind, task_ids=scope.task_ids, reason=reason, bulk=True,
        scope=scope.description,
    )  # fmt: skip


def api_token_create(*, user: User, name: str, expires_days: int | None = None) -> str:
    """Create a token for ``user`` and return it; only its hash is kept. It is refused after
    ``expires_days`` (default ``TASKTRAIL_API_TOKEN_DAYS``)."""
    days = settings.TASKTRAIL_API_TOKEN_DAYS if expires_days is None else expires_days
    if not 1 <= days <= ApiToken.MAX_DAYS:
        raise ValueError(f"a token expires after 1 to {ApiToken.MAX_DAYS} days, not {days}")
    key = ApiToken.new_key()
    ApiToken.objects.create(
        user=user,
        name=name[:100],
        key_hash=ApiToken.hash(key),
        expires_at=timezone.now() + dt.timedelta(days=days),
    )
    logger.info("API token %r created for %s, expires in %d days", name[:100], user, days)
    return key


def api_tokens_revoke(*, token_ids: Sequence[int] = (), username: str | None = None) -> int:
    """Revoke tokens by id, or every token of ``username``; returns how many were still live."""
    tokens = ApiToken.objects.filter(revoked_at__isnull=True)
    if username is not None:
        tokens = tokens.filter(user__username=username)
    else:
        tokens = tokens.filter(pk__in=list(token_ids))
    revoked = tokens.update(revoked_at=timezone.now())
    logger.info("API tokens revoked: %d (ids %s, user %s)", revoked, list(token_ids), username)
    return revoked

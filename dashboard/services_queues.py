"""Pausing, resuming and purging a queue on the shop's broker, on behalf of a person.

The same steps as every operator action (``dashboard.services``): permission → state check at
write time → audit (refusals included; the scope names the queue) → the durable change → the
Celery call. A pause is durable before any worker hears of it: the ``QueuePause`` row (what the
pages and the alert rules read) and the entry in the shared set in the event stream's Redis (what
workers read: ``tasktrail.queue_pauses``) are written together, or neither is. The broadcast then
tells the running workers; a broker that cannot be reached leaves the pause in place (workers
started later skip the queue, running ones pick it up at their next re-read of the set) and the
audit row says the broadcast did not reach them.

Roles: pausing and resuming need ``pause_queue`` (operators); purging deletes waiting messages,
needs ``purge_queue`` (admins only) and asks for the queue's name typed out.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Final

import redis
from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from dashboard.alerts.rules import duration_words
from dashboard.models import OperatorAction, QueuePause
from dashboard.redis_client import shared_client
from dashboard.selectors.queue_pauses import purge_preview
from dashboard.services import ActionInputError, _audit_refusal, clean_reason
from tasktrail import queue_pauses

logger = logging.getLogger("tasktrail.actions")

PAUSE_PERMISSION: Final = "dashboard.pause_queue"
RESUME_PERMISSION: Final = PAUSE_PERMISSION
PURGE_PERMISSION: Final = "dashboard.purge_queue"
MAX_PAUSED: Final = queue_pauses.MAX_QUEUES

Kind = OperatorAction.Kind
Outcome = OperatorAction.Outcome


def queue_scope(queue: str) -> str:
    return f"queue {queue}"


def clean_queue(queue: str) -> str:
    problem = queue_pauses.queue_name_problem(queue)
    if problem is not None:
        raise ActionInputError(f"Not a queue name: {problem}.")
    return queue


@dataclass
class QueueActionResult:
    action: OperatorAction
    permitted: bool = True
    answers: dict[str, str] = field(default_factory=dict)  # worker -> its answer to the broadcast
    purged: int | None = None
    # What to tell the person when the audit row says something else (a refusal counted on the
    # row of refusals past the limit, dashboard.refusals).
    note: str | None = None

    @property
    def done(self) -> bool:
        return self.action.outcome == Outcome.DONE

    @property
    def message(self) -> str:
        return self.note if self.note is not None else self.action.message


def _audit(
    *, user: User, kind: str, queue: str, reason: str, outcome: str, message: str
) -> OperatorAction:
    return OperatorAction.objects.create(
        user=user,
        username=user.get_username(),
        kind=kind,
        scope=queue_scope(queue[: queue_pauses.MAX_QUEUE_NAME]),
        reason=reason,
        outcome=outcome,
        message=message,
    )


def _refuse(
    user: User, kind: str, queue: str, reason: str, message: str, *, permitted: bool = True
) -> QueueActionResult:
    """A refusal's audit row: one each, up to ``refusals.LIMIT`` a minute per person, then one row
    counting the rest of that minute (as for task actions). ``reason`` is already checked."""
    scope = queue_scope(str(queue or "").replace("\x00", "")[: queue_pauses.MAX_QUEUE_NAME])
    action = _audit_refusal(
        user=user, kind=kind, reason=reason, message=message, targets=(), bulk=False, scope=scope
    )
    note = None if action.message == message else message
    return QueueActionResult(action=action, permitted=permitted, note=note)


def _refuse_unpermitted(user: User, kind: str, queue: str, reason: str) -> QueueActionResult:
    verb = {"pause_queue": "pause", "resume_queue": "resume", "purge_queue": "purge"}
    message = f"{user.get_username()} may not {verb[kind]} queues."
    return _refuse(user, kind, queue, reason, message, permitted=False)


def _finish(action: OperatorAction, outcome: str, message: str) -> None:
    action.outcome, action.message = outcome, message
    action.save(update_fields=["outcome", "message"])


def _not_written(exc: Exception) -> str:
    from workers import control

    detail = control.mask(f"{type(exc).__name__}: {exc}", settings.REDIS_URL)
    return f"the paused set in Redis could not be written ({detail})."


def _since(paused_at: dt.datetime, now: dt.datetime) -> str:
    return duration_words((now - paused_at).total_seconds())


# -- pause and resume ----------------------------------------------------------------------------


def queue_pause(*, user: User, queue: str, reason: str) -> QueueActionResult:
    """Pause ``queue``: no worker consumes it until it is resumed, restarted workers included."""
    reason = clean_reason(reason)  # first: nothing is stored for a reason too long to keep
    if not user.has_perm(PAUSE_PERMISSION):
        return _refuse_unpermitted(user, Kind.PAUSE_QUEUE, queue, reason)
    queue = clean_queue(queue)
    now = timezone.now()
    stream = settings.TASKTRAIL_STREAM
    refused: str | None = None
    try:
        with transaction.atomic():
            existing = QueuePause.objects.select_for_update().filter(queue=queue).first()
            if existing is not None:
                refused = (
                    f"Refused: queue {queue} is already paused, by {existing.paused_by} "
                    f"{_since(existing.paused_at, now)} ago."
                )
            elif QueuePause.objects.count() >= MAX_PAUSED:
                refused = f"Refused: {MAX_PAUSED} queues are paused already; resume some first."
            if refused is not None:
                return _refuse(user, Kind.PAUSE_QUEUE, queue, reason, refused)
            action = _audit(
                user=user, kind=Kind.PAUSE_QUEUE, queue=queue, reason=reason,
                outcome=Outcome.PENDING, message=f"Pausing queue {queue}.",
            )  # fmt: skip
            QueuePause.objects.create(
                queue=queue, paused_at=now, paused_by=user.get_username(), reason=reason,
                action=action,
            )  # fmt: skip
            # Inside the transaction: a set Redis did not take rolls the row back.
            pause = queue_pauses.Pause(queue, user.get_username(), now.timestamp(), reason)
            queue_pauses.remember(shared_client(), stream, pause)
    except IntegrityError:  # paused by someone else between the check and the insert
        message = f"Refused: queue {queue} is already paused."
        return _refuse(user, Kind.PAUSE_QUEUE, queue, reason, message)
    except redis.RedisError as exc:  # Redis: nothing was paused
        action = _audit(
            user=user, kind=Kind.PAUSE_QUEUE, queue=queue, reason=reason, outcome=Outcome.FAILED,
            message=f"Not paused: {_not_written(exc)}",
        )  # fmt: skip
        logger.warning("pause of %s by %s failed: %s", queue, action.username, action.message)
        return QueueActionResult(action=action)
    return _broadcast(action, queue, pause=True, head=f"Paused queue {queue}")


def queue_resume(*, user: User, queue: str, reason: str) -> QueueActionResult:
    """Resume ``queue``: the workers that stopped consuming it because of the pause consume it
    again (and only they)."""
    reason = clean_reason(reason)
    if not user.has_perm(RESUME_PERMISSION):
        return _refuse_unpermitted(user, Kind.RESUME_QUEUE, queue, reason)
    queue = clean_queue(queue)
    now = timezone.now()
    try:
        with transaction.atomic():
            existing = QueuePause.objects.select_for_update().filter(queue=queue).first()
            if existing is None:
                message = f"Refused: queue {queue} is not paused."
                return _refuse(user, Kind.RESUME_QUEUE, queue, reason, message)
            was = f"paused by {existing.paused_by} for {_since(existing.paused_at, now)}"
            action = _audit(
                user=user, kind=Kind.RESUME_QUEUE, queue=queue, reason=reason,
                outcome=Outcome.PENDING, message=f"Resuming queue {queue}, {was}.",
            )  # fmt: skip
            existing.delete()
            queue_pauses.forget(shared_client(), settings.TASKTRAIL_STREAM, queue)
    except redis.RedisError as exc:  # Redis: still paused
        action = _audit(
            user=user, kind=Kind.RESUME_QUEUE, queue=queue, reason=reason, outcome=Outcome.FAILED,
            message=f"Not resumed: {_not_written(exc)}",
        )  # fmt: skip
        logger.warning("resume of %s by %s failed: %s", queue, action.username, action.message)
        return QueueActionResult(action=action)
    return _broadcast(action, queue, pause=False, head=f"Resumed queue {queue}, {was}")


def _broadcast(action: OperatorAction, queue: str, *, pause: bool, head: str) -> QueueActionResult:
    from tasktrail.queue_pauses import DEFAULT_REFRESH
    from workers import control

    try:
        answers = control.broadcast_queue_pause(queue, pause=pause)
    except Exception as exc:
        why = str(exc) if isinstance(exc, control.BrokerError) else control.mask(type(exc).__name__)
        _finish(
            action, Outcome.PARTIAL,
            f"{head}; the broadcast did not reach the workers ({why}). It is kept: workers started "
            f"from now on {'skip' if pause else 'consume'} the queue, and running workers follow "
            f"at their next read of the paused set (every {DEFAULT_REFRESH:.0f} s by default).",
        )  # fmt: skip
        logger.warning("%s by %s: %s", action.kind, action.username, action.message)
        return QueueActionResult(action=action)
    acted = sorted(h for h, a in answers.items() if a in ("stopping", "resuming"))
    errors = sorted(h for h, a in answers.items() if a.startswith("error"))
    verb = "stopped consuming it" if pause else "consume it again"
    words = [f"{len(acted)} worker{'s' if len(acted) != 1 else ''} {verb}"]
    if acted:
        words[0] += f" ({', '.join(acted[:5])}{', …' if len(acted) > 5 else ''})"
    others = len(answers) - len(acted) - len(errors)
    if others:
        words.append(f"{others} answered without consuming it")
    if errors:
        words.append(
            f"{len(errors)} could not ({errors[0]}: {answers[errors[0]]}); they follow at their "
            "next read of the paused set, or when restarted"
        )
    if not answers:
        words.append(
            f"no worker answered within {control.QUEUE_REPLY_TIMEOUT:.0f} s; running workers "
            "follow at their next read of the paused set"
        )
    _finish(action, Outcome.PARTIAL if errors else Outcome.DONE, f"{head}: {'; '.join(words)}.")
    return QueueActionResult(action=action, answers=answers)


# -- purge -----------------------------------------------------------------------------------------


def queue_purge(*, user: User, queue: str, confirm_name: str, reason: str) -> QueueActionResult:
    """Delete every message waiting in ``queue`` on the shop's broker. Admins only, confirmed by
    typing the queue's exact name; the audit row says how many were deleted."""
    reason = clean_reason(reason)
    if not user.has_perm(PURGE_PERMISSION):
        return _refuse_unpermitted(user, Kind.PURGE_QUEUE, queue, reason)
    queue = clean_queue(queue)
    if confirm_name != queue:
        message = "Refused: the name typed to confirm is not the queue's name."
        return _refuse(user, Kind.PURGE_QUEUE, queue, reason, message)
    preview = purge_preview(queue)
    before = "the monitor had not measured it"
    if preview.depth is not None:
        ago = duration_words(preview.measured_ago)
        before = f"the monitor had measured {preview.depth} waiting {ago} ago"

    action = _audit(
        user=user, kind=Kind.PURGE_QUEUE, queue=queue, reason=reason, outcome=Outcome.PENDING,
        message=f"Purging queue {queue} ({before}).",
    )  # fmt: skip
    from workers import control

    try:
        purged = control.purge_queue(queue)
    except Exception as exc:
        why = str(exc) if isinstance(exc, control.BrokerError) else control.mask(type(exc).__name__)
        _finish(action, Outcome.FAILED, f"Not purged: {why} ({before}).")
        logger.warning("purge of %s by %s failed: %s", queue, action.username, why)
        return QueueActionResult(action=action)
    _finish(
        action, Outcome.DONE,
        f"Purged queue {queue}: {purged} message{'s' if purged != 1 else ''} deleted ({before}).",
    )  # fmt: skip
    return QueueActionResult(action=action, purged=purged)

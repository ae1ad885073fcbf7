"""How events become rows: each event gives a *patch*; patches join column by column.

Every column has one of three rules, and each rule is commutative, associative and idempotent, so
any permutation or duplication of a task's events joins to the same row (the property the monitor's
at-least-once delivery needs):

- ``MIN`` / ``MAX`` — the smallest / largest non-null value (first-seen and last-seen timestamps;
  for facts every event agrees on, such as the task name, MIN simply picks the one value).
- ``Latest(key)`` — the value carried by the patch with the highest ``key`` column (ties: MAX).
  The state, the worker and the last error are each such a group, with their own key, so an older
  event never overwrites a newer one.

The same tables drive the SQL upsert (``dashboard.ingest.upsert``), which applies the join against
the stored row inside the database; the Python fold here merges a batch first so each task costs one
row write however many events it had.

State precedence (a key, compared as one integer): terminal states beat everything (nothing follows
a terminal event for a task id), then the attempt number, then the step within the attempt
(waiting < received < started). Celery's own retry moves an attempt-n STARTED row to attempt n+1
waiting, shown as RETRY.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from dashboard.constants import (  # the models use them too; re-exported here
    FAILURE,
    NO_KEY,
    PENDING,
    RECEIVED,
    REJECTED,
    RETRY,
    REVOKED,
    STARTED,
    SUCCESS,
)
from tasktrail.tracing.context import parse_traceparent

Event = Mapping[str, Any]
Patch = dict[str, Any]

# -- states -------------------------------------------------------------------------------------

# step within an attempt (non-terminal) / order among terminal outcomes (tie-break only)
_STEP = {"published": 0, "received": 1, "started": 2}
_TERMINAL_ORDER = {REJECTED: 1, FAILURE: 2, SUCCESS: 3, REVOKED: 4}
_TERMINAL_BY_KIND = {
    "succeeded": SUCCESS,
    "failed": FAILURE,
    "revoked": REVOKED,
    "rejected": REJECTED,
    "unknown": REJECTED,
}
_MAX_ATTEMPT: Final = (1 << 31) - 1


def state_key(*, terminal: bool, attempt: int, rank: int) -> int:
    return (int(terminal) << 40) | (min(max(attempt, 0), _MAX_ATTEMPT) << 8) | rank


def state_from_key(key: int) -> str:
    if key < 0:
        return PENDING
    rank, attempt, terminal = key & 0xFF, (key >> 8) & _MAX_ATTEMPT, key >> 40
    if terminal:
        return next(s for s, r in _TERMINAL_ORDER.items() if r == rank)
    if rank == _STEP["received"]:
        return RECEIVED
    if rank == _STEP["started"]:
        return STARTED
    return RETRY if attempt > 0 else PENDING


# Outcome of one attempt: a failed attempt that will run again ends in RETRY.
_ATTEMPT_RANK = {PENDING: 0, RECEIVED: 1, STARTED: 2, RETRY: 3}
_ATTEMPT_RANK.update({state: 10 + order for state, order in _TERMINAL_ORDER.items()})
_ATTEMPT_OUTCOME_BY_RANK = {rank: state for state, rank in _ATTEMPT_RANK.items()}


def attempt_outcome_from_rank(rank: int) -> str:
    return _ATTEMPT_OUTCOME_BY_RANK.get(rank, PENDING)


# -- rules ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    kind: Literal["min", "max", "latest"]
    key: str | None = None  # for "latest": the column holding the group's key


MIN, MAX = Rule("min"), Rule("max")


def latest(key: str) -> Rule:
    return Rule("latest", key)


TASK_RULES: Final[dict[str, Rule]] = {
    # facts every event of the task agrees on
    "name": MIN,
    "queue": MIN,
    "input_id": MIN,
    "args": MIN,
    "kwargs": MIN,
    "arg_names": MIN,
    "args_dropped": MIN,
    "eta": MIN,
    "expires": MIN,
    "parent_id": MIN,
    "root_id": MIN,
    "group_id": MIN,
    "retry_of": MIN,
    "trace_id": MIN,
    "trace_sampled": MAX,
    # first seen / last seen
    "first_seen_at": MIN,
    "published_at": MIN,
    "received_at": MIN,
    "updated_at": MAX,
    "retries": MAX,
    # groups
    "state_key": MAX,
    "state": latest("state_key"),
    "finished_at": latest("state_key"),
    "runtime": latest("state_key"),
    "worker_key": MAX,
    "worker": latest("worker_key"),
    "start_key": MAX,
    "started_at": latest("start_key"),
    "queue_wait": latest("start_key"),
    "error_key": MAX,
    "exc_type": latest("error_key"),
    "exc_message": latest("error_key"),
}
TASK_KEY_COLUMNS: Final = ("state_key", "worker_key", "start_key", "error_key")

ATTEMPT_RULES: Final[dict[str, Rule]] = {
    "published_at": MIN,
    "eta": MIN,
    "received_at": MIN,
    "started_at": MIN,
    "queue_wait": MIN,
    "span_id": MIN,
    "worker_key": MAX,
    "worker": latest("worker_key"),
    "pid": latest("worker_key"),
    "outcome_rank": MAX,
    "outcome": latest("outcome_rank"),
    "finished_at": latest("outcome_rank"),
    "runtime": latest("outcome_rank"),
    "exc_type": latest("outcome_rank"),
    "exc_message": latest("outcome_rank"),
    "traceback": latest("outcome_rank"),
}
ATTEMPT_KEY_COLUMNS: Final = ("worker_key", "outcome_rank")


def _join_value(rule: Rule, a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    if rule.kind == "min":
        return a if a <= b else b
    return a if a >= b else b


@dataclass(frozen=True)
class _Plan:
    simple: dict[str, Rule]  # MIN / MAX columns
    groups: dict[str, tuple[str, ...]]  # key column -> the columns that follow it


_plans: dict[int, _Plan] = {}


def _plan(rules: Mapping[str, Rule]) -> _Plan:
    plan = _plans.get(id(rules))
    if plan is None:
        groups: dict[str, list[str]] = {}
        for column, rule in rules.items():
            if rule.kind == "latest":
                assert rule.key is not None
                groups.setdefault(rule.key, []).append(column)
        simple = {c: r for c, r in rules.items() if r.kind != "latest"}
        plan = _plans[id(rules)] = _Plan(simple, {k: tuple(v) for k, v in groups.items()})
    return plan


def join(rules: Mapping[str, Rule], left: Patch, right: Patch) -> Patch:
    """The join of two patches under ``rules``; either side may lack columns (null).

    Walks only the columns ``right`` has (events are sparse): this runs once per event.
    """
    plan = _plan(rules)
    out: Patch = {c: v for c, v in left.items() if c in rules}
    for column, value in right.items():
        rule = plan.simple.get(column)
        if rule is not None:
            joined = _join_value(rule, out.get(column), value)
            if joined is not None:
                out[column] = joined
    for key, columns in plan.groups.items():
        ka, kb = left.get(key, NO_KEY), right.get(key, NO_KEY)
        if kb > ka:  # right's group wins whole, its nulls included
            for column in columns:
                value = right.get(column)
                if value is None:
                    out.pop(column, None)
                else:
                    out[column] = value
        elif kb == ka:
            for column in columns:
                joined = _join_value(MAX, left.get(column), right.get(column))
                if joined is not None:
                    out[column] = joined
    return out


# -- events -> patches ------------------------------------------------------------------------


def _when(ts: Any) -> dt.datetime | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(float(ts), tz=dt.UTC)


def _event_attempt(event: Event) -> int:
    retries = event.get("retries")
    return retries if isinstance(retries, int) and retries >= 0 else 0


def _error_of(event: Event) -> tuple[str | None, str | None]:
    if event["kind"] == "unknown":
        return "NotRegistered", event.get("exc_message") or f"no task {event.get('name')!r}"
    return event.get("exc_type"), event.get("exc_message")


def _waits_for_eta(event: Event) -> bool:
    eta = event.get("eta")
    return eta is not None and float(eta) > float(event["ts"])


def task_patch(event: Event) -> Patch:
    """The row columns one event knows, with the keys that order it against other events."""
    kind = event["kind"]
    ts = float(event["ts"])
    attempt = _event_attempt(event)
    when = _when(ts)
    patch: Patch = {
        "first_seen_at": when,
        "updated_at": when,
        "retries": attempt,
    }
    for column in (
        "name",
        "queue",
        "input_id",
        "args",
        "kwargs",
        "arg_names",
        "args_dropped",
        "parent_id",
        "root_id",
        "group_id",
        "retry_of",
    ):
        if event.get(column) is not None:
            patch[column] = event[column]
    if patch.get("parent_id") == event["task_id"]:
        # Celery's own retry republishes the task from inside itself, so that message names the
        # task as its own parent. A task is never its own parent: dropped here, so MIN cannot pick
        # it over the real parent the first message named.
        del patch["parent_id"]
    patch["eta"] = _when(event.get("eta"))
    patch["expires"] = _when(event.get("expires"))
    parent = parse_traceparent(event.get("traceparent"))
    if parent is not None:
        patch["trace_id"] = parent.trace_id
        patch["trace_sampled"] = parent.sampled
    if kind in ("published", "received"):
        patch["published_at"] = _when(event.get("published_at"))

    terminal = _TERMINAL_BY_KIND.get(kind)
    if terminal is not None:
        key = state_key(terminal=True, attempt=attempt, rank=_TERMINAL_ORDER[terminal])
        patch.update(finished_at=when, runtime=event.get("runtime"))
    elif kind == "retried":
        patch["retries"] = attempt + 1
        key = state_key(terminal=False, attempt=attempt + 1, rank=_STEP["published"])
    elif kind == "received" and _waits_for_eta(event):
        # A worker holds ETA/countdown messages until they are due: still waiting to run.
        key = state_key(terminal=False, attempt=attempt, rank=_STEP["published"])
    else:
        key = state_key(terminal=False, attempt=attempt, rank=_STEP[kind])
    patch["state_key"] = key
    patch["state"] = state_from_key(key)

    if kind == "received":
        patch["received_at"] = when
    if event.get("hostname") is not None:
        patch["worker_key"] = key
        patch["worker"] = event["hostname"]
    if kind == "started":
        patch["start_key"] = attempt
        patch["started_at"] = when
        patch["queue_wait"] = event.get("queue_wait")
    exc_type, exc_message = _error_of(event)
    if exc_type is not None or exc_message is not None:
        patch["error_key"] = key
        patch["exc_type"] = exc_type
        patch["exc_message"] = exc_message
    elif kind == "succeeded":
        patch["error_key"] = key  # a success clears the row's error (attempts keep theirs)
    return {k: v for k, v in patch.items() if v is not None}


def attempt_patch(event: Event) -> Patch | None:
    """The attempt row one event knows, or None when the event belongs to no known attempt."""
    kind = event["kind"]
    if kind == "published" and event.get("published_at") is None:
        return None
    retries = event.get("retries")
    if not isinstance(retries, int) or retries < 0:
        return None  # e.g. a failure reported by the main process without the attempt's context
    when = _when(event["ts"])
    outcome = {
        "published": PENDING,
        "received": RECEIVED,
        "started": STARTED,
        "retried": RETRY,
    }.get(kind) or _TERMINAL_BY_KIND[kind]
    rank = _ATTEMPT_RANK[outcome]
    patch: Patch = {
        "task_id": event["task_id"],
        "attempt": retries,
        "outcome_rank": rank,
        "outcome": outcome,
    }
    if kind == "published":
        patch["published_at"] = _when(event.get("published_at"))
        patch["eta"] = _when(event.get("eta"))
    elif kind == "received":
        patch["received_at"] = when
    elif kind == "started":
        patch["started_at"] = when
        patch["queue_wait"] = event.get("queue_wait")
        patch["span_id"] = event.get("span_id")
    if kind in ("retried", *_TERMINAL_BY_KIND):
        patch["finished_at"] = when
        patch["runtime"] = event.get("runtime")
        exc_type, exc_message = _error_of(event)
        patch.update(exc_type=exc_type, exc_message=exc_message, traceback=event.get("traceback"))
        if event.get("span_id"):
            patch["span_id"] = event["span_id"]
    if event.get("hostname") is not None:
        patch["worker_key"] = rank
        patch["worker"] = event["hostname"]
        patch["pid"] = event.get("pid")
    return {k: v for k, v in patch.items() if v is not None}


@dataclass
class Folded:
    tasks: dict[str, Patch]
    attempts: dict[tuple[str, int], Patch]


def fold(events: Iterable[Event]) -> Folded:
    """Join a batch of events per task id (and per attempt)."""
    tasks: dict[str, Patch] = {}
    attempts: dict[tuple[str, int], Patch] = {}
    for event in events:
        task_id = event["task_id"]
        patch = task_patch(event)
        current = tasks.get(task_id)
        tasks[task_id] = patch if current is None else join(TASK_RULES, current, patch)
        a_patch = attempt_patch(event)
        if a_patch is not None:
            a_key = (task_id, a_patch["attempt"])
            a_current = attempts.get(a_key)
            if a_current is None:
                attempts[a_key] = a_patch
            else:
                joined = join(ATTEMPT_RULES, a_current, a_patch)
                joined.update(task_id=task_id, attempt=a_key[1])
                attempts[a_key] = joined
    return Folded(tasks=tasks, attempts=attempts)

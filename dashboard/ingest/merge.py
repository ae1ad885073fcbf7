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

- ``First(key)`` — the value carried by the patch with the *lowest* key. A task's identity (name;
  queue and arguments) is fixed by its first publish: the key ranks a ``published`` event before any
  other kind, then by the monitor's receive time (``bounds.RX``, which a producer cannot choose; the
  event's own time when there is none), then by a hash of the value. A later event cannot replace
  it, whatever it says.

State precedence (a key, compared as one integer), as Celery's own (``celery.states.precedence``):
SUCCESS beats everything, at any attempt (a task that succeeded never fails, retries or starts
again), and of two successes the first the monitor received wins (its key holds the receive time,
inverted); then the other terminal states (nothing follows a terminal event for a task id), by
attempt then kind; then the attempt number, then the step within the attempt (waiting < received <
started). Celery's own retry moves an attempt-n STARTED row to attempt n+1 waiting, shown as RETRY.

Ties within a group: two errors of the same state (the row's) or two outcomes of the same rank (an
attempt's) are decided by the receive key (``first_key``): the first received wins whole, so a
forged failure cannot replace an attempt's error, message or traceback. Two starts of the same
attempt keep the earliest time, as the attempt row does.

After a SUCCESS, a start of a later attempt (a forgery: Celery never runs a task again once it has
succeeded) is recorded as a conflict, and the row's start is that of the success's attempt, read
from the attempt rows once every event is joined (``settle``; in SQL the writer's ``settle``
statement): the one step that is not a join of patches, as the start of an attempt below the
highest is not kept on the task row.

Conflicts: an event whose identity disagrees with the first one, or, once the task succeeded,
another SUCCESS, a terminal event or an event of a later attempt (a ``retried`` of the success's own
attempt included), is kept on the row as ``identity_conflict_*`` (which field, what the other event
said).
Of all such events the row keeps the one with the lowest conflict key, a choice that is itself a
join: the same whichever order the events arrive in and however often. ``dashboard.ingest.upsert``
computes the same in SQL.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from dashboard.constants import (  # the models use them too; re-exported here
    FAILURE,
    IDENTITY_EPOCH_MS,
    IDENTITY_HASH_BITS,
    IDENTITY_MS_BITS,
    NO_KEY,
    PENDING,
    RECEIVED,
    REJECTED,
    RETRY,
    REVOKED,
    STARTED,
    STATE_CONFLICT_BASE,
    SUCCESS,
)
from dashboard.ingest.bounds import CLAMPED, RX, RX_SEQ, bound_event
from tasktrail.tracing.context import parse_traceparent

Event = Mapping[str, Any]
Patch = dict[str, Any]

# -- states -------------------------------------------------------------------------------------

# step within an attempt (non-terminal) / order among terminal outcomes (tie-break only)
_STEP = {"published": 0, "received": 1, "started": 2}
STEP: Final = _STEP
TERMINAL_ORDER = {REJECTED: 1, FAILURE: 2, SUCCESS: 3, REVOKED: 4}
_TERMINAL_BY_KIND = {
    "succeeded": SUCCESS,
    "failed": FAILURE,
    "revoked": REVOKED,
    "rejected": REJECTED,
    "unknown": REJECTED,
}
_MAX_ATTEMPT: Final = (1 << 31) - 1
# Bands of the state key: non-terminal keys stay below TERMINAL_BAND (the attempt takes bits 8-38),
# other terminal states below SUCCESS_BAND, SUCCESS at and above it. Rows written before SUCCESS had
# a band of its own hold every terminal state at 1 << 40 + attempt; they decode the same.
TERMINAL_BAND: Final = 1 << 39
SUCCESS_BAND: Final = 1 << 40
# A SUCCESS key: this band, then the monitor's receive time of the event inverted (41 bits of ms
# since IDENTITY_EPOCH_MS; the first received is the highest key), then the attempt, inverted too
# (10 bits: ingest refuses attempts over bounds.MAX_ATTEMPT; received in the same ms, the lower
# attempt wins) and the rank. Success keys of rows written before this
# band (SUCCESS_BAND | attempt << 8 | rank) decode the same; they are below it.
FIRST_SUCCESS_BAND: Final = 1 << 61
SUCCESS_ATTEMPT_BITS: Final = 10
_SUCCESS_MS_SHIFT: Final = 8 + SUCCESS_ATTEMPT_BITS
_SUCCESS_ATTEMPT_MAX: Final = (1 << SUCCESS_ATTEMPT_BITS) - 1


def state_key(*, terminal: bool, attempt: int, rank: int, ms: int | None = None) -> int:
    """``ms``: the receive time (``bounds.RX``) of a SUCCESS, which orders two successes."""
    if terminal and rank == TERMINAL_ORDER[SUCCESS] and ms is not None:
        ms_bits = (1 << IDENTITY_MS_BITS) - 1
        inverted = ms_bits - min(max(ms - IDENTITY_EPOCH_MS, 0), ms_bits)
        attempt = _SUCCESS_ATTEMPT_MAX - min(max(attempt, 0), _SUCCESS_ATTEMPT_MAX)
        return FIRST_SUCCESS_BAND | (inverted << _SUCCESS_MS_SHIFT) | (attempt << 8) | rank
    band = 0
    if terminal:
        band = SUCCESS_BAND if rank == TERMINAL_ORDER[SUCCESS] else TERMINAL_BAND
    return band | (min(max(attempt, 0), _MAX_ATTEMPT) << 8) | rank


def is_success_key(key: int) -> bool:
    return key >= SUCCESS_BAND and key & 0xFF == TERMINAL_ORDER[SUCCESS]


def is_failed_key(key: int) -> bool:
    """A terminal state other than SUCCESS."""
    return key >= TERMINAL_BAND and not is_success_key(key)


def attempt_of_key(key: int) -> int:
    if key >= FIRST_SUCCESS_BAND:
        return _SUCCESS_ATTEMPT_MAX - ((key >> 8) & _SUCCESS_ATTEMPT_MAX)
    return (key >> 8) & _MAX_ATTEMPT


def state_from_key(key: int) -> str:
    if key < 0:
        return PENDING
    rank, attempt, terminal = key & 0xFF, attempt_of_key(key), key >= TERMINAL_BAND
    if terminal:
        return next(s for s, r in TERMINAL_ORDER.items() if r == rank)
    if rank == _STEP["received"]:
        return RECEIVED
    if rank == _STEP["started"]:
        return STARTED
    return RETRY if attempt > 0 else PENDING


# Outcome of one attempt: a failed attempt that will run again ends in RETRY.
_ATTEMPT_RANK = {PENDING: 0, RECEIVED: 1, STARTED: 2, RETRY: 3}
_ATTEMPT_RANK.update({state: 10 + order for state, order in TERMINAL_ORDER.items()})
_ATTEMPT_OUTCOME_BY_RANK = {rank: state for state, rank in _ATTEMPT_RANK.items()}


def attempt_outcome_from_rank(rank: int) -> str:
    return _ATTEMPT_OUTCOME_BY_RANK.get(rank, PENDING)


# -- rules ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    kind: Literal["min", "max", "latest", "first", "retries", "conflict"]
    key: str | None = None  # for "latest" / "first": the column holding the group's key
    # "latest" only, for equal keys: a receive key column (the lowest wins whole; a null one is
    # older than any), then each column's MIN or MAX
    tie_key: str | None = None
    tie: Literal["min", "max"] = "max"


MIN, MAX = Rule("min"), Rule("max")
# the row's retry count: the largest any event gave, but a SUCCESS's own attempt once it succeeded
RETRIES = Rule("retries")
# the kept conflict (see the module's doc): its key, and the columns that follow it
CONFLICT = Rule("conflict")


def latest(key: str, *, tie_key: str | None = None, tie: Literal["min", "max"] = "max") -> Rule:
    return Rule("latest", key, tie_key, tie)


def first(key: str) -> Rule:
    return Rule("first", key)


# Identity groups: key column -> (the columns that follow it, the ones compared for a conflict).
# The arguments' columns come together in one event (the publish, or the receipt of a message
# published without the recorder); the name comes in every event.
IDENTITY_GROUPS: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "name_key": (("name",), ("name",)),
    "call_key": (
        ("queue", "input_id", "args", "kwargs", "arg_names", "args_dropped"),
        ("queue", "args", "kwargs"),
    ),
}
# An event takes part in a group when it carries one of these; the group's other columns in an
# event that does not are left out (a queue alone says nothing about the call).
_IDENTITY_CARRIERS: Final = {"name_key": ("name",), "call_key": ("args", "kwargs", "args_dropped")}
CONFLICT_KEY: Final = "identity_conflict_key"
CONFLICT_COLUMNS: Final = ("identity_conflict_field", "identity_conflict")
CONFLICT_TEXT: Final = 500  # characters of the other event's value kept on the row

TASK_RULES: Final[dict[str, Rule]] = {
    # identity: fixed by the first publish
    "name_key": MIN,
    "name": first("name_key"),
    "call_key": MIN,
    "queue": first("call_key"),
    "input_id": first("call_key"),
    "args": first("call_key"),
    "kwargs": first("call_key"),
    "arg_names": first("call_key"),
    "args_dropped": first("call_key"),
    # facts every event of the task agrees on
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
    "times_clamped": MAX,
    # groups
    "state_key": MAX,
    "state": latest("state_key"),
    "finished_at": latest("state_key"),
    "runtime": latest("state_key"),
    "retries": RETRIES,  # after state_key: reads the joined key
    "worker_key": MAX,
    "worker": latest("worker_key"),
    "start_key": MAX,
    "started_at": latest("start_key", tie="min"),
    "queue_wait": latest("start_key", tie="min"),
    "error_key": MAX,
    "exc_type": latest("error_key", tie_key="error_rx"),
    "exc_message": latest("error_key", tie_key="error_rx"),
    "error_rx": latest("error_key", tie_key="error_rx"),
    CONFLICT_KEY: CONFLICT,
    "identity_conflict_field": CONFLICT,
    "identity_conflict": CONFLICT,
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
    "outcome": latest("outcome_rank", tie_key="outcome_rx"),
    "finished_at": latest("outcome_rank", tie_key="outcome_rx"),
    "runtime": latest("outcome_rank", tie_key="outcome_rx"),
    "exc_type": latest("outcome_rank", tie_key="outcome_rx"),
    "exc_message": latest("outcome_rank", tie_key="outcome_rx"),
    "traceback": latest("outcome_rank", tie_key="outcome_rx"),
    "outcome_rx": latest("outcome_rank", tie_key="outcome_rx"),
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
    groups: dict[str, tuple[str, ...]]  # key column -> the columns that follow it (latest)
    ties: dict[str, Rule]  # key column -> a rule of its group (its tie_key and tie)
    firsts: dict[str, tuple[str, ...]]  # key column -> the columns that follow it (first)
    special: bool  # the task rules' retries and conflict columns


_plans: dict[int, _Plan] = {}


def _plan(rules: Mapping[str, Rule]) -> _Plan:
    plan = _plans.get(id(rules))
    if plan is None:
        groups: dict[str, list[str]] = {}
        firsts: dict[str, list[str]] = {}
        for column, rule in rules.items():
            if rule.kind in ("latest", "first"):
                assert rule.key is not None
                (groups if rule.kind == "latest" else firsts).setdefault(rule.key, []).append(
                    column
                )
        simple = {c: r for c, r in rules.items() if r.kind in ("min", "max")}
        ties = {r.key: r for r in rules.values() if r.kind == "latest" and r.key is not None}
        plan = _plans[id(rules)] = _Plan(
            simple,
            {k: tuple(v) for k, v in groups.items()},
            ties,
            {k: tuple(v) for k, v in firsts.items()},
            any(r.kind in ("retries", "conflict") for r in rules.values()),
        )
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
            _take(out, right, columns)
        elif kb == ka:
            rule = plan.ties[key]
            if rule.tie_key is not None:
                ta, tb = left.get(rule.tie_key), right.get(rule.tie_key)
                ta, tb = NO_KEY if ta is None else ta, NO_KEY if tb is None else tb
                if tb < ta:  # received first: wins whole
                    _take(out, right, columns)
                    continue
                if ta < tb:
                    continue
            on_tie = MIN if rule.tie == "min" else MAX
            for column in columns:
                joined = _join_value(on_tie, left.get(column), right.get(column))
                if joined is not None:
                    out[column] = joined
    for key, columns in plan.firsts.items():
        fa, fb = left.get(key), right.get(key)
        if fb is None:
            continue
        if fa is None or fb < fa:  # right's group wins whole, its nulls included
            _take(out, right, columns)
        elif fb == fa:
            for column in columns:
                joined = _join_value(MIN, left.get(column), right.get(column))
                if joined is not None:
                    out[column] = joined
    if plan.special:
        _join_retries(out, left, right)
        _join_conflict(out, left, right)
    return out


def _take(out: Patch, right: Patch, columns: Iterable[str]) -> None:
    for column in columns:
        value = right.get(column)
        if value is None:
            out.pop(column, None)
        else:
            out[column] = value


def _join_retries(out: Patch, left: Patch, right: Patch) -> None:
    key = out.get("state_key", NO_KEY)
    if is_success_key(key):
        out["retries"] = attempt_of_key(key)
    else:
        joined = _join_value(MAX, left.get("retries"), right.get("retries"))
        if joined is not None:
            out["retries"] = joined


# A conflict's key: identity conflicts take the disagreeing event's group key (below
# STATE_CONFLICT_BASE); states a SUCCESS outranked come after them, the highest state first (so of
# all such events, the one kept is the same whichever order they are joined in).
STATE_CONFLICT_TOP: Final = (1 << 62) - 1  # above every state key; BASE + TOP fits in a bigint

Conflict = tuple[int, str, str]  # key, field, what the other event said


def describe_state(key: int) -> str:
    return f"{state_from_key(key)} (retries {attempt_of_key(key)})"


def identity_differs(left: Patch, right: Patch, compared: Iterable[str]) -> str | None:
    """The first compared column whose values differ (a value against none differs too)."""
    for column in compared:
        if left.get(column) != right.get(column):
            return column
    return None


def conflict_candidates(left: Patch, right: Patch, state_key: int) -> list[Conflict]:
    """What joining ``left`` and ``right`` shows that neither showed alone."""
    found: list[Conflict] = []
    for key, (_, compared) in IDENTITY_GROUPS.items():
        ka, kb = left.get(key), right.get(key)
        if ka is None or kb is None:
            continue
        column = identity_differs(left, right, compared)
        if column is None:
            continue
        if ka != kb:
            loser_key, loser = (kb, right) if kb > ka else (ka, left)
            other = loser.get(column)
        else:  # same key (a hash collision): the larger value loses, as ``first`` keeps the less
            loser_key, other = ka, _join_value(MAX, left.get(column), right.get(column))
        text = "" if other is None else str(other)[:CONFLICT_TEXT]
        found.append((loser_key, column, text))
    low = min(left.get("state_key", NO_KEY), right.get("state_key", NO_KEY))
    if is_success_key(state_key) and outranked_by_success(low, state_key):
        found.append((STATE_CONFLICT_BASE + STATE_CONFLICT_TOP - low, "state", describe_state(low)))
    return found


def outranked_by_success(low: int, success: int) -> bool:
    """Whether an event of state key ``low`` cannot have happened beside the SUCCESS ``success``:
    a failure (any terminal state), another SUCCESS of another attempt, or any event of a later
    attempt (Celery never runs a task again once it succeeded)."""
    if low < 0:
        return False
    if is_failed_key(low):
        return True
    if is_success_key(low):
        return attempt_of_key(low) != attempt_of_key(success)
    return attempt_of_key(low) > attempt_of_key(success)


def _join_conflict(out: Patch, left: Patch, right: Patch) -> None:
    candidates = conflict_candidates(left, right, out.get("state_key", NO_KEY))
    for side in (left, right):
        key = side.get(CONFLICT_KEY)
        if key is not None:
            candidates.append(
                (key, side.get(CONFLICT_COLUMNS[0]) or "", side.get(CONFLICT_COLUMNS[1]) or "")
            )
    if not candidates:
        return
    key, field, text = min(candidates, key=lambda c: c[0])
    out[CONFLICT_KEY] = key
    out[CONFLICT_COLUMNS[0]] = field
    out[CONFLICT_COLUMNS[1]] = text


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


# The identity key's layout: see dashboard.constants.
_EPOCH_MS: Final = IDENTITY_EPOCH_MS
_MS_BITS: Final = IDENTITY_MS_BITS
_HASH_BITS: Final = IDENTITY_HASH_BITS


_SEQ_BITS: Final = 12  # of the low bits: the entry's sequence number within its ms, then a hash


def identity_key(*, published: bool, ms: int, value: str, seq: int = 0) -> int:
    ms = min(max(ms - _EPOCH_MS, 0), (1 << _MS_BITS) - 1)
    seq = min(max(seq, 0), (1 << _SEQ_BITS) - 1)
    low = _HASH_BITS - _SEQ_BITS
    return (
        (int(not published) << (_MS_BITS + _HASH_BITS))
        | (ms << _HASH_BITS)
        | (seq << low)
        | (_digest(value) & ((1 << low) - 1))
    )


@functools.lru_cache(maxsize=4096)  # task names repeat in every event: hashed once
def _digest(value: str) -> int:
    digest = hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def identity_key_time(key: int) -> dt.datetime | None:
    """When the monitor received the event an identity key was made from."""
    if key >= STATE_CONFLICT_BASE:
        return None
    ms = (key >> _HASH_BITS) & ((1 << _MS_BITS) - 1)
    return dt.datetime.fromtimestamp((ms + _EPOCH_MS) / 1000, tz=dt.UTC)


def _received_ms(event: Event) -> int:
    """The monitor's receive time of the event (its own time when there is none)."""
    rx = event.get(RX)
    return rx if isinstance(rx, int) else int(float(event["ts"]) * 1000)


def first_key(event: Event, value: str) -> int:
    """A receive key: which of two events of a group the monitor received first (the lower)."""
    seq = event.get(RX_SEQ, 0)
    return identity_key(published=False, ms=_received_ms(event), value=value, seq=seq)


def _outcome_said(event: Event) -> str:
    """What an outcome event says, for its receive key: two events received together (one entry)
    are ordered by its hash, the same way on the task row and the attempt row."""
    said = (event["kind"], *_error_of(event), event.get("traceback"), event["ts"])
    return "\x1f".join("" if v is None else str(v) for v in (*said, event.get("runtime")))


_OUTCOME_KEY: Final = "_outcome_key"  # kept on the bounded copy: the task and attempt share it


def _outcome_key(event: Event) -> int:
    key = event.get(_OUTCOME_KEY)
    if key is None:
        key = first_key(event, _outcome_said(event))
        if isinstance(event, dict):  # bound_event's own copy
            event[_OUTCOME_KEY] = key
    return int(key)


def _identity(event: Event, patch: Patch) -> None:
    """The identity keys of the columns this event carries (see ``IDENTITY_GROUPS``).

    ``identity_key`` unrolled: this runs for every event, and the key's time part is the same for
    every group of it."""
    ms = min(max(_received_ms(event) - _EPOCH_MS, 0), (1 << _MS_BITS) - 1)
    seq = min(max(event.get(RX_SEQ, 0), 0), (1 << _SEQ_BITS) - 1)
    low = _HASH_BITS - _SEQ_BITS
    base = (
        (int(event["kind"] != "published") << (_MS_BITS + _HASH_BITS))
        | (ms << _HASH_BITS)
        | (seq << low)
    )
    mask = (1 << low) - 1
    for key, (columns, _) in IDENTITY_GROUPS.items():
        if not any(patch.get(c) is not None for c in _IDENTITY_CARRIERS[key]):
            for column in columns:
                patch.pop(column, None)
            continue
        if len(columns) == 1:
            value = patch[columns[0]]  # a carrier: not None
        else:
            value = "\x1f".join("\x00" if patch.get(c) is None else patch[c] for c in columns)
        patch[key] = base | (_digest(value) & mask)


def task_patch(event: Event) -> Patch:
    """The row columns one event knows, with the keys that order it against other events."""
    return _task_patch(bound_event(event))


def _task_patch(event: Event) -> Patch:
    kind = event["kind"]
    ts = float(event["ts"])
    attempt = _event_attempt(event)
    when = _when(ts)
    patch: Patch = {
        "first_seen_at": when,
        "updated_at": when,
        "retries": attempt,
    }
    if event.get(CLAMPED):
        patch["times_clamped"] = True
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
        key = state_key(
            terminal=True, attempt=attempt, rank=TERMINAL_ORDER[terminal], ms=_received_ms(event)
        )
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
        patch["error_rx"] = _outcome_key(event)
    elif kind == "succeeded":
        patch["error_key"] = key  # a success clears the row's error (attempts keep theirs)
        patch["error_rx"] = _outcome_key(event)
    patch = {k: v for k, v in patch.items() if v is not None}
    _identity(event, patch)
    return patch


def attempt_patch(event: Event) -> Patch | None:
    """The attempt row one event knows, or None when the event belongs to no known attempt."""
    return _attempt_patch(bound_event(event))


def _attempt_patch(event: Event) -> Patch | None:
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
    if kind in ("retried", *_TERMINAL_BY_KIND):  # other ranks' group columns never differ
        patch["outcome_rx"] = _outcome_key(event)
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
        event = bound_event(event)
        patch = _task_patch(event)
        current = tasks.get(task_id)
        tasks[task_id] = patch if current is None else join(TASK_RULES, current, patch)
        a_patch = _attempt_patch(event)
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


# -- settling: the one step that reads the attempts ------------------------------------------------


def needs_settling(row: Patch) -> bool:
    """A succeeded task whose start is of a later attempt than the success's (a forged start)."""
    key = row.get("state_key", NO_KEY)
    return is_success_key(key) and row.get("start_key", NO_KEY) > attempt_of_key(key)


def settle_task(row: Patch, attempts: Mapping[int, Patch]) -> Patch:
    """``row`` with, when it needs settling, the start of the success's attempt (or of the latest
    attempt before it that started; none if none did) from its ``attempts`` rows by number. The
    start key stays the highest seen, so the next join settles again."""
    if not needs_settling(row):
        return row
    success = attempt_of_key(row["state_key"])
    started = [n for n, a in attempts.items() if n <= success and a.get("started_at") is not None]
    out = {k: v for k, v in row.items() if k not in ("started_at", "queue_wait")}
    if started:
        attempt = attempts[max(started)]
        out["started_at"] = attempt["started_at"]
        if attempt.get("queue_wait") is not None:
            out["queue_wait"] = attempt["queue_wait"]
    return out


def settle(folded: Folded) -> dict[str, Patch]:
    """The task rows as the writer stores them: the fold, settled against its attempts."""
    by_task: dict[str, dict[int, Patch]] = {}
    for (task_id, attempt), a_patch in folded.attempts.items():
        by_task.setdefault(task_id, {})[attempt] = a_patch
    return {t: settle_task(row, by_task.get(t, {})) for t, row in folded.tasks.items()}

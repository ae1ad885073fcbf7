"""Forged and broken events never rewrite a task's history, in any order and on re-delivery.

The real events of a task and hostile ones (another identity, times far off, a failure after a
success), each stamped with the stream entry it came in (``bounds.RX``: the real ones first, as the
forger learns the task id from them), must fold to one row whatever the order and duplication, and
the SQL upsert must store that same row however the events are batched.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashboard.ingest.bounds import RX, RX_SEQ
from dashboard.ingest.merge import FAILURE, SUCCESS, TASK_RULES, fold, join, settle
from dashboard.ingest.writer import write_events
from dashboard.models import TaskAttempt, TaskRun
from tests.conftest import event, examples, new_task_id, story_retry_then_fail, story_success

T0 = 1_750_000_000.0
RX0 = int(T0 * 1000) + 5  # the entries arrive just after their events' time

ROW_FIELDS = [
    "name", "queue", "input_id", "args", "kwargs", "arg_names", "args_dropped", "state",
    "retries", "exc_type", "exc_message", "first_seen_at", "published_at", "received_at",
    "started_at", "finished_at", "updated_at", "worker", "runtime", "name_key", "call_key",
    "identity_conflict_key", "identity_conflict_field", "identity_conflict", "times_clamped",
    "queue_wait", "start_key", "error_rx",
]  # fmt: skip


ATTEMPT_FIELDS = [
    "outcome", "worker", "started_at", "finished_at", "runtime", "queue_wait", "exc_type",
    "exc_message", "traceback", "outcome_rx",
]  # fmt: skip


def stamped(events, first_entry: int = 0):
    """Each event in an entry of its own, in this order (entry ids grow)."""
    return [{**e, RX: RX0 + first_entry + i, RX_SEQ: 0} for i, e in enumerate(events)]


def forged(task_id: str) -> list[dict]:
    """What an attacker adds after the real events: a smaller name and arguments, a failure with a
    high retry count, and times far from when they arrived."""
    return [
        event(
            "published",
            task_id,
            T0 - 5,
            name=" shop.send_invoice",
            queue=" default",
            args=' [36210, "attacker@evil.example"]',
            kwargs="{}",
            input_id="0",
            retries=0,
            published_at=T0 - 5,
        ),
        event("failed", task_id, 32_000_000_000.0, retries=99, exc_type="E", exc_message="x"),
        event("received", task_id, 946_684_801.0, retries=0, hostname="evil\r\nINFO forged"),
        event("started", task_id, T0 + 4, name="shop.other", retries=0, hostname="w1@host"),
    ]


def hostile_story(task_id: str) -> list[dict]:
    real = stamped(story_success(task_id))
    return real + stamped(forged(task_id), first_entry=len(real))


def hostile_failed_story(task_id: str) -> list[dict]:
    real = stamped(story_retry_then_fail(task_id))
    return real + stamped(forged(task_id)[:1], first_entry=len(real))


def other_attempts(task_id: str) -> list[dict]:
    """Events of other attempts than the real success's: a later start, another success, a retry
    of the successful attempt, a second failure of the first attempt."""
    return [
        event("started", task_id, T0 + 30, retries=99, hostname="evil@host", queue_wait=29.0),
        event("started", task_id, T0 + 31, retries=7, hostname="evil@host"),
        event("succeeded", task_id, T0 + 40, retries=5, hostname="evil@host", runtime=39.0),
        event("retried", task_id, T0 + 41, retries=0, hostname="evil@host", exc_type="Retry"),
        event("failed", task_id, T0 + 42, retries=0, exc_type="ZForged", exc_message="zz",
              traceback="zz"),
    ]  # fmt: skip


def hostile_attempts_story(task_id: str) -> list[dict]:
    """The forgeries received after the real success."""
    real = stamped(story_success(task_id))
    return real + stamped(other_attempts(task_id), first_entry=len(real))


def hostile_attempts_while_running(task_id: str) -> list[dict]:
    """The forgeries received while the task runs: before its success."""
    real = story_success(task_id)
    forged = other_attempts(task_id)
    return (
        stamped(real[:-1])
        + stamped(forged, first_entry=len(real))
        + stamped(real[-1:], first_entry=len(real) + len(forged))
    )


STORIES = [hostile_story, hostile_failed_story, hostile_attempts_story]
DB_STORIES = [*STORIES, hostile_attempts_while_running]


def test_forged_attempts_leave_the_real_success_and_are_a_conflict():
    events = hostile_attempts_story("x")
    real = settle(fold(stamped(story_success("x"))))["x"]
    row = settle(fold(events))["x"]
    for column in ("state", "retries", "started_at", "finished_at", "runtime", "worker"):
        assert row.get(column) == real.get(column), column
    assert row["identity_conflict_field"] == "state"
    assert row["identity_conflict"] == "SUCCESS (retries 5)"
    assert fold(events).tasks["x"]["start_key"] == 99  # the highest seen: the next join settles


def test_forged_events_leave_the_real_identity_and_success():
    row = fold(hostile_story("x")).tasks["x"]
    assert (row["name"], row["queue"], row["args"], row["input_id"]) == (
        "shop.send_invoice",
        "default",
        "[1234]",
        "1234",
    )
    assert (row["state"], row["retries"]) == (SUCCESS, 0)
    assert row["worker"] == "w1@host"
    assert row["times_clamped"] is True
    assert row["identity_conflict_field"] in ("name", "queue")
    assert row["identity_conflict"].startswith(" ")


def test_a_later_failure_of_a_succeeded_task_is_a_conflict_not_a_state():
    events = stamped(
        [
            *story_success("x"),
            event("failed", "x", T0 + 9, retries=99, exc_type="E", exc_message="forged"),
        ]
    )
    row = fold(events).tasks["x"]
    assert (row["state"], row["retries"], row.get("exc_type")) == (SUCCESS, 0, None)
    assert row["identity_conflict_field"] == "state"
    assert row["identity_conflict"] == "FAILURE (retries 99)"


def test_a_failed_task_keeps_its_arguments_against_a_later_publish():
    row = fold(hostile_failed_story("x")).tasks["x"]
    assert row["state"] == FAILURE
    assert row["name"] == "shop.charge"
    assert row["identity_conflict_field"] == "name"


def test_far_off_times_are_the_receive_time():
    events = stamped(
        [
            event("published", "x", 946_684_801.0, name="n", retries=0, published_at=946_684_801.0),
            event("failed", "x", 32_000_000_000.0, retries=0),
        ]
    )
    row = fold(events).tasks["x"]
    assert row["times_clamped"] is True
    assert row["first_seen_at"].timestamp() == pytest.approx(RX0 / 1000)
    assert row["published_at"].timestamp() == pytest.approx(RX0 / 1000)
    assert row["finished_at"].timestamp() == pytest.approx((RX0 + 1) / 1000)


def test_control_characters_and_long_arguments_are_bounded(settings):
    settings.TASKTRAIL_MAX_ARGS_BYTES = 100
    events = stamped(
        [
            event("published", "x", T0, name="a\u202eb", args="[" + "1," * 80 + "1]", kwargs="{}"),
            event("received", "x", T0 + 1, hostname="w1\r\nINFO fake line", retries=0),
        ]
    )
    row = fold(events).tasks["x"]
    assert row["name"] == "a\ufffdb"
    assert row["worker"] == "w1\ufffd\ufffdINFO fake line"
    assert "args" not in row and "kwargs" not in row
    assert row["args_dropped"].startswith("too large")


@settings(max_examples=examples(300))
@given(story=st.sampled_from(STORIES), seed=st.integers(0, 2**32 - 1), dupes=st.integers(0, 6))
def test_any_order_and_duplication_converge_on_the_safe_row(story, seed, dupes):
    events = story("x")
    rng = random.Random(seed)
    shuffled = events + [rng.choice(events) for _ in range(dupes)]
    rng.shuffle(shuffled)
    assert fold(shuffled).tasks == fold(events).tasks
    assert fold(shuffled).attempts == fold(events).attempts


@settings(max_examples=examples(200))
@given(story=st.sampled_from(STORIES), seed=st.integers(0, 2**32 - 1))
def test_joining_partial_folds_equals_one_fold(story, seed):
    events = story("x")
    rng = random.Random(seed)
    rng.shuffle(events)
    cut = rng.randint(0, len(events))
    left, right = fold(events[:cut]).tasks.get("x", {}), fold(events[cut:]).tasks.get("x", {})
    assert join(TASK_RULES, left, right) == fold(events).tasks["x"]
    assert join(TASK_RULES, right, left) == fold(events).tasks["x"]


@pytest.mark.django_db
@settings(max_examples=examples(40), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(story=st.sampled_from(DB_STORIES), seed=st.integers(0, 2**32))
def test_any_batching_and_order_stores_the_folded_row(story, seed):
    task_id = new_task_id()
    events = story(task_id)
    rng = random.Random(seed)
    shuffled = events + [rng.choice(events) for _ in range(rng.randint(0, 3))]
    rng.shuffle(shuffled)
    while shuffled:
        cut = rng.randint(1, len(shuffled))
        write_events(shuffled[:cut])
        shuffled = shuffled[cut:]
    expected = settle(fold(events))[task_id]
    row = TaskRun.objects.filter(task_id=task_id).values(*ROW_FIELDS).get()
    for field in ROW_FIELDS:
        want = expected.get(field)
        if field == "times_clamped":
            want = bool(want)
        assert row[field] == want, field
    attempts = fold(events).attempts
    stored = {a.attempt: a for a in TaskAttempt.objects.filter(task_id=task_id)}
    assert sorted(stored) == sorted(n for _, n in attempts)
    for (_, number), patch in attempts.items():
        for field in ATTEMPT_FIELDS:
            assert getattr(stored[number], field) == patch.get(field), (number, field)

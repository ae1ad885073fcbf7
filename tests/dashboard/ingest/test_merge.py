from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboard.ingest.merge import (
    ATTEMPT_RULES,
    FAILURE,
    PENDING,
    RECEIVED,
    REJECTED,
    RETRY,
    REVOKED,
    STARTED,
    SUCCESS,
    TASK_RULES,
    fold,
    join,
    state_from_key,
    task_patch,
)
from tests.conftest import event, examples, story_retry_then_fail, story_success

T0 = 1_750_000_000.0


def final(events):
    return fold(events).tasks["x"]


@pytest.mark.parametrize(
    ("kinds", "expected"),
    [
        (["published"], PENDING),
        (["published", "received"], RECEIVED),
        (["received", "published"], RECEIVED),
        (["started", "received", "published"], STARTED),
        (["published", "received", "started", "succeeded"], SUCCESS),
        (["succeeded", "started", "received", "published"], SUCCESS),
        (["failed", "published"], FAILURE),
        (["published", "revoked"], REVOKED),
        (["rejected"], REJECTED),
        (["unknown", "published"], REJECTED),
        (["started", "retried"], RETRY),
        (["retried", "started"], RETRY),
    ],
)
def test_state_after_events_in_any_order(kinds, expected):
    events = [event(kind, "x", T0 + i, retries=0) for i, kind in enumerate(kinds)]
    assert final(events)["state"] == expected


def test_retry_then_next_attempt_started_is_started():
    events = [
        event("started", "x", T0, retries=0),
        event("retried", "x", T0 + 1, retries=0, exc_type="E", exc_message="boom"),
        event("started", "x", T0 + 5, retries=1),
    ]
    row = final(events)
    assert row["state"] == STARTED
    assert row["retries"] == 1


def test_republish_for_retry_shows_retry_not_pending():
    events = [
        event("started", "x", T0, retries=0),
        event("published", "x", T0 + 1, retries=1, published_at=T0 + 1),
    ]
    assert final(events)["state"] == RETRY


def test_terminal_event_wins_even_without_attempt_number():
    # A failure reported by the worker's main process (time limit) may not know the attempt.
    events = [event("started", "x", T0, retries=2), event("failed", "x", T0 + 9, exc_type="Limit")]
    row = final(events)
    assert row["state"] == FAILURE
    assert row["retries"] == 2


def test_first_seen_and_last_seen_timestamps():
    row = final(story_success("x"))
    assert row["first_seen_at"].timestamp() == T0
    assert row["updated_at"].timestamp() == T0 + 3.0
    assert row["published_at"].timestamp() == T0
    assert row["started_at"].timestamp() == T0 + 1.0
    assert row["finished_at"].timestamp() == T0 + 3.0
    assert row["runtime"] == 2.0
    assert row["queue_wait"] == 1.0


def test_retry_story_keeps_last_error_worker_and_original_publish_time():
    row = fold(story_retry_then_fail("x")).tasks["x"]
    assert row["state"] == FAILURE
    assert row["retries"] == 1
    assert row["exc_message"] == "declined again"
    assert row["worker"] == "w2@host"
    assert row["published_at"].timestamp() == T0


def test_retry_story_attempts():
    attempts = fold(story_retry_then_fail("x")).attempts
    assert sorted(attempts) == [("x", 0), ("x", 1)]
    first, second = attempts[("x", 0)], attempts[("x", 1)]
    assert (first["outcome"], first["exc_message"], first["worker"]) == (
        RETRY,
        "declined",
        "w1@host",
    )
    assert first["traceback"] == "Traceback…"
    assert (second["outcome"], second["worker"]) == (FAILURE, "w2@host")
    assert second["published_at"].timestamp() == T0 + 0.3
    assert second["eta"].timestamp() == T0 + 1.3


def test_unknown_task_has_not_registered_error():
    row = final([event("unknown", "x", T0, name="nope", exc_message=None)])
    assert row["state"] == REJECTED
    assert row["exc_type"] == "NotRegistered"


def test_trace_id_from_traceparent_with_sampled_flag():
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    row = final([event("published", "x", T0, traceparent=tp, published_at=T0)])
    assert row["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert row["trace_sampled"] is True


def test_malformed_traceparent_gives_no_trace_id():
    row = final([event("published", "x", T0, traceparent="garbage", published_at=T0)])
    assert "trace_id" not in row


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (-1, PENDING),  # no event yet
        (0, PENDING),  # attempt 0, waiting
        (1, RECEIVED),
        (2, STARTED),
        (256, RETRY),  # attempt 1, waiting: a Celery retry
        (258, STARTED),
        (1 << 40 | 1, REJECTED),
        (1 << 40 | 2, FAILURE),
        (1 << 40 | 256 | 3, SUCCESS),
        (1 << 40 | 4, REVOKED),
    ],
)
def test_state_from_key(key, expected):
    assert state_from_key(key) == expected


STORIES = [story_success, story_retry_then_fail]


@settings(max_examples=examples(300))
@given(story=st.sampled_from(STORIES), seed=st.integers(0, 2**32 - 1), dupes=st.integers(0, 6))
def test_any_permutation_and_duplication_gives_the_same_row(story, seed, dupes):
    events = story("x")
    rng = random.Random(seed)
    shuffled = events + [rng.choice(events) for _ in range(dupes)]
    rng.shuffle(shuffled)
    assert fold(shuffled).tasks == fold(events).tasks
    assert fold(shuffled).attempts == fold(events).attempts


@settings(max_examples=examples(200))
@given(story=st.sampled_from(STORIES), seed=st.integers(0, 2**32 - 1))
def test_joining_partial_folds_equals_one_fold(story, seed):
    # What the monitor does across batches: fold each batch, then join with the stored row.
    events = story("x")
    rng = random.Random(seed)
    rng.shuffle(events)
    cut = rng.randint(0, len(events))
    left, right = fold(events[:cut]).tasks.get("x", {}), fold(events[cut:]).tasks.get("x", {})
    assert join(TASK_RULES, left, right) == fold(events).tasks["x"]
    assert join(TASK_RULES, right, left) == fold(events).tasks["x"]


def test_join_is_idempotent_for_attempt_rules():
    patch = fold(story_retry_then_fail("x")).attempts[("x", 0)]
    columns = {k: v for k, v in patch.items() if k not in ("task_id", "attempt")}
    assert join(ATTEMPT_RULES, patch, patch) == columns


def test_task_patch_leaves_out_unknown_values():
    patch = task_patch(event("received", "x", T0))
    assert "name" not in patch and "worker" not in patch


def test_received_while_waiting_for_a_retry_countdown_shows_retry():
    events = [
        event("started", "x", T0, retries=0),
        event("retried", "x", T0 + 1, retries=0, exc_type="E", exc_message="boom"),
        event("received", "x", T0 + 1.1, retries=1, eta=T0 + 5, hostname="w1"),
    ]
    assert final(events)["state"] == RETRY
    events.append(event("started", "x", T0 + 5, retries=1))
    assert final(events)["state"] == STARTED


def test_countdown_task_waits_as_pending_until_it_starts():
    events = [event("received", "x", T0, retries=0, eta=T0 + 60, hostname="w1")]
    assert final(events)["state"] == PENDING


def test_success_after_a_retry_clears_the_row_error_but_not_the_attempts():
    events = [
        event("started", "x", T0, retries=0),
        event("retried", "x", T0 + 1, retries=0, exc_type="Timeout", exc_message="slow"),
        event("started", "x", T0 + 2, retries=1),
        event("succeeded", "x", T0 + 3, retries=1),
    ]
    folded = fold(events)
    assert "exc_type" not in folded.tasks["x"] and "exc_message" not in folded.tasks["x"]
    assert folded.attempts[("x", 0)]["exc_message"] == "slow"

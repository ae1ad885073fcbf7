"""The SQL upsert applies the same join as the Python fold, against the stored row."""

from __future__ import annotations

import random

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashboard.ingest.merge import FAILURE, RETRY, SUCCESS, TASK_RULES, fold
from dashboard.ingest.writer import write_events
from dashboard.models import TaskAttempt, TaskRun
from tests.conftest import (
    event,
    examples,
    new_task_id,
    story_retry_then_fail,
    story_success,
)

pytestmark = pytest.mark.django_db

ROW_FIELDS = [
    "name", "queue", "input_id", "state", "retries", "exc_type", "exc_message", "first_seen_at",
    "published_at", "received_at", "started_at", "finished_at", "updated_at", "worker", "runtime",
    "queue_wait", "args", "kwargs", "trace_id",
]  # fmt: skip
ATTEMPT_FIELDS = ["attempt", "outcome", "worker", "started_at", "finished_at", "exc_message"]


def row_of(task_id):
    return TaskRun.objects.filter(task_id=task_id).values(*ROW_FIELDS).get()


def attempts_of(task_id):
    return list(
        TaskAttempt.objects.filter(task_id=task_id).order_by("attempt").values(*ATTEMPT_FIELDS)
    )


def test_success_story_written_as_one_row_and_one_attempt():
    task_id = new_task_id()
    written = write_events(story_success(task_id))
    assert (written.events, written.tasks, written.attempts) == (4, 1, 1)
    row = row_of(task_id)
    assert row["state"] == SUCCESS
    assert row["input_id"] == "1234"
    assert row["worker"] == "w1@host"
    assert row["runtime"] == 2.0
    assert attempts_of(task_id)[0]["outcome"] == SUCCESS


def test_events_split_over_batches_in_reverse_order_converge():
    task_id = new_task_id()
    for e in reversed(story_retry_then_fail(task_id)):
        write_events([e])
    row = row_of(task_id)
    assert (row["state"], row["retries"], row["exc_message"]) == (FAILURE, 1, "declined again")
    assert [a["outcome"] for a in attempts_of(task_id)] == [RETRY, FAILURE]


def test_writing_the_same_batch_twice_changes_nothing():
    task_id = new_task_id()
    write_events(story_retry_then_fail(task_id))
    once = (row_of(task_id), attempts_of(task_id))
    write_events(story_retry_then_fail(task_id))
    assert (row_of(task_id), attempts_of(task_id)) == once
    assert TaskRun.objects.filter(task_id=task_id).count() == 1


def test_older_event_never_overwrites_newer_state():
    task_id = new_task_id()
    write_events([event("succeeded", task_id, 1_750_000_010.0, retries=0, hostname="w9")])
    write_events([event("started", task_id, 1_750_000_005.0, retries=0, hostname="w1")])
    row = row_of(task_id)
    assert (row["state"], row["worker"]) == (SUCCESS, "w9")


def rows_per_task_statement() -> int:
    """How many task rows one upsert statement takes: PostgreSQL sends 5000 rows as column
    arrays; SQLite as many as its parameter limit allows, at most 1000."""
    if connection.vendor == "postgresql":
        return 5000
    columns = 1 + len(TASK_RULES)  # task_id, then one per merged column
    return min(1000, (connection.features.max_query_params or 30000) // columns)


def test_many_tasks_in_one_batch_use_chunked_statements():
    count = rows_per_task_statement() + 1  # one row into a second statement
    ids = [new_task_id() for _ in range(count)]
    events = [e for task_id in ids for e in story_success(task_id)]
    statements: list[str] = []

    def record(execute, sql, params, many, context):
        if sql.startswith(f"INSERT INTO {connection.ops.quote_name(TaskRun._meta.db_table)}"):
            statements.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        written = write_events(events)
    assert written.tasks == count
    assert len(statements) == 2
    assert TaskRun.objects.filter(task_id__in=ids, state=SUCCESS).count() == count


@settings(max_examples=examples(40), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(story=st.sampled_from([story_success, story_retry_then_fail]), seed=st.integers(0, 2**32))
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
    expected = fold(events).tasks[task_id]
    row = row_of(task_id)
    for field in ROW_FIELDS:
        assert row[field] == expected.get(field), field

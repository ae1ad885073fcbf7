"""What a retry may run, and what a refused action may cost: Celery's built-ins never, a name no
worker reported never, TASKTRAIL_RETRY=declared only what opted in; the reason is bounded before
the permission is checked, refusals past a rate are counted rather than recorded, and a forged
span id never stops a retry. Real database, real Redis (the broker and the stream's)."""

from __future__ import annotations

import json
import re
import time

import pytest
from django.contrib.auth.models import Group, User

from dashboard import refusals
from dashboard.filters import TaskFilter
from dashboard.ingest.writer import write_events
from dashboard.models import OperatorAction, OperatorActionTarget, TaskAttempt, TaskRun
from dashboard.services import (
    MAX_REASON,
    ActionInputError,
    _original_traces,
    task_run_retry,
    task_runs_bulk,
)
from tests.catalog import register_demo_tasks, register_task
from tests.conftest import event, new_task_id

pytestmark = pytest.mark.django_db(transaction=True)

T0 = 1_750_000_000.0
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
MB = 1024 * 1024


@pytest.fixture(autouse=True)
def _shop_catalog() -> None:
    register_demo_tasks()  # Celery's own tasks are among them: the demo app registers them too


def user_in(role: str) -> User:
    user = User.objects.create_user(f"{role}-{new_task_id()}")
    if role != "nobody":
        user.groups.add(Group.objects.get(name=role))
    return User.objects.get(pk=user.pk)


def failed(name: str, args: str = "[1]", kwargs: str = "{}", **fields) -> str:
    task_id = new_task_id()
    write_events(
        [
            event("published", task_id, T0, name=name, queue="default", args=args, kwargs=kwargs,
                  published_at=T0, **fields),
            event("failed", task_id, T0 + 1, exc_type="ValueError", exc_message="boom"),
        ]
    )  # fmt: skip
    return task_id


def queued(client, queue: str = "default") -> list[dict]:
    return [json.loads(m) for m in client.lrange(queue, 0, -1)]


STARMAP_ARGS = json.dumps(
    [
        {"task": "workers.tasks.charge_card", "args": [], "kwargs": {}, "options": {},
         "subtask_type": None, "immutable": False},
        [["PAY-1", 100, "tok_attacker"]],
    ]
)  # fmt: skip


# -- what may run -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["celery.starmap", "celery.map", "celery.chunks", "celery.chain"])
def test_celery_builtins_are_never_retried_though_the_catalog_lists_them(redis_client, name):
    from dashboard.selectors.catalog import TaskCatalog

    assert TaskCatalog().get(name) is not None  # the demo worker's report lists them
    task_id = failed(name, args=STARMAP_ARGS, arg_names="card_token,card_token")
    result = task_run_retry(user=user_in("operator"), task_id=task_id, reason="customer asked")
    assert result.done == [] and "built-in" in result.refused[task_id]
    assert queued(redis_client) == []
    assert TaskRun.objects.get(task_id=task_id).retried_as is None
    assert OperatorAction.objects.get().outcome == "refused"


def test_a_builtin_is_refused_even_when_a_worker_reports_it_as_its_own(redis_client):
    register_task("celery.custom_thing", retryable=True)
    task_id = failed("celery.custom_thing")
    result = task_run_retry(user=user_in("operator"), task_id=task_id, reason="x")
    assert "built-in" in result.refused[task_id] and queued(redis_client) == []


def test_a_name_no_worker_reported_is_refused_single_and_bulk(redis_client):
    single, one, two = (failed("shop.never_registered") for _ in range(3))
    operator = user_in("operator")
    result = task_run_retry(user=operator, task_id=single, reason="x")
    assert (
        "no recent worker of this shop has registered shop.never_registered"
        in (result.refused[single])
    )
    bulk = task_runs_bulk(user=operator, kind="retry", reason="x", task_ids=[one, two])
    assert bulk.done == [] and set(bulk.refused) == {one, two}
    assert queued(redis_client) == []


def test_declared_mode_retries_only_tasks_that_opted_in(redis_client, settings):
    from celery import Celery

    from dashboard.ingest.catalog import write_catalog
    from tasktrail.catalog import Report, describe

    app = Celery("declared-shop", set_as_current=False)

    @app.task(shared=False, name="shop.refund", tasktrail_retryable=True)
    def refund(order_id): ...

    @app.task(shared=False, name="shop.ship")
    def ship(order_id): ...

    tasks, _ = describe(app)  # what the shop's worker reports
    write_catalog(Report("declared-shop@h", "declared-shop", time.time(), tuple(tasks)))
    settings.TASKTRAIL_RETRY = "declared"
    operator = user_in("operator")
    silent, opted_in = failed("shop.ship"), failed("shop.refund")
    refused = task_run_retry(user=operator, task_id=silent, reason="x")
    assert "does not declare tasktrail_retryable = True" in refused.refused[silent]
    assert "TASKTRAIL_RETRY=declared" in refused.refused[silent]
    done = task_run_retry(user=operator, task_id=opted_in, reason="x")
    assert done.done == [opted_in]
    [message] = queued(redis_client)
    assert message["headers"]["task"] == "shop.refund"
    # the default mode retries both
    settings.TASKTRAIL_RETRY = "catalog"
    assert task_run_retry(user=operator, task_id=silent, reason="x").done == [silent]


def test_unreadable_recorded_arguments_are_refused_not_sent(redis_client):
    task_id = failed("workers.tasks.send_invoice", args='{"not": "a list"}')
    result = task_run_retry(user=user_in("operator"), task_id=task_id, reason="x")
    assert "not a list and a map" in result.refused[task_id] and queued(redis_client) == []


# -- the reason, before the permission ------------------------------------------------------------


@pytest.mark.parametrize("role", ["nobody", "viewer", "operator"])
def test_a_huge_reason_is_refused_before_the_permission_and_nothing_is_stored(redis_client, role):
    task_id = failed("workers.tasks.send_invoice")
    with pytest.raises(ActionInputError, match=f"keep it to {MAX_REASON:,}"):
        task_run_retry(user=user_in(role), task_id=task_id, reason="r" * int(2.4 * MB))
    with pytest.raises(ActionInputError, match="keep it to"):
        task_runs_bulk(user=user_in(role), kind="retry", reason="r" * int(2.4 * MB),
                       task_ids=[task_id])  # fmt: skip
    assert not OperatorAction.objects.exists() and not OperatorActionTarget.objects.exists()
    assert queued(redis_client) == []


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("a\x00b", "U+0000"),
        ("fix \x1b[31mred", "U+001B"),
        ("ok\u202egnp.exe", "U+202E"),
        ("line\u2028break", "U+2028"),
        ("x" * (MAX_REASON + 1), "keep it to"),
        ("  \n\t ", "reason is required"),
    ],
)
def test_a_reason_with_control_characters_or_too_long_is_refused(reason, message):
    with pytest.raises(ActionInputError, match=message.replace("+", r"\+")):
        task_run_retry(user=user_in("viewer"), task_id=failed("x.y"), reason=reason)
    assert not OperatorAction.objects.exists()


def test_a_reason_of_plain_lines_is_kept(redis_client):
    reason = "Invoice template fixed.\r\n\tSee ticket 42 — café ✓" + "x" * (MAX_REASON - 60)
    task_id = failed("workers.tasks.send_invoice")
    task_run_retry(user=user_in("operator"), task_id=task_id, reason=reason)
    assert OperatorAction.objects.get().reason == reason.strip()


# -- refusals past the rate -----------------------------------------------------------------------


def test_refusals_past_the_limit_are_counted_on_one_row_not_recorded_each(redis_client):
    viewer = user_in("viewer")
    task_id = failed("workers.tasks.send_invoice")
    total = refusals.LIMIT + 25
    results = [
        task_run_retry(user=viewer, task_id=task_id, reason=f"try {i}") for i in range(total)
    ]
    assert all(not r.permitted for r in results)
    rows = list(OperatorAction.objects.order_by("pk"))
    # within one minute: LIMIT rows, then one that counts the rest (two if the minute turned)
    assert refusals.LIMIT + 1 <= len(rows) <= refusals.LIMIT + 2
    assert [r.reason for r in rows[: refusals.LIMIT]] == [f"try {i}" for i in range(refusals.LIMIT)]
    summaries = [r for r in rows if "counted here only" in r.message]
    counted = sum(int(re.match(r"(\d+) more refused", r.message)[1]) for r in summaries)
    recorded = len(rows) - len(summaries)
    assert recorded + counted == total
    assert all(r.outcome == "refused" and r.target_count == 0 for r in summaries)
    assert OperatorActionTarget.objects.count() == recorded  # one target each, none past it
    assert TaskRun.objects.get(task_id=task_id).retried_as is None


def test_an_operators_refused_retries_past_the_limit_are_counted_too(redis_client):
    operator = user_in("operator")
    task_id = failed("shop.never_registered")
    results = [task_run_retry(user=operator, task_id=task_id, reason="again") for _ in range(15)]
    assert all("no recent worker" in r.message for r in results)  # each is told why
    assert all("no recent worker" in r.refused[task_id] for r in results)
    rows = OperatorAction.objects.count()
    assert refusals.LIMIT + 1 <= rows <= refusals.LIMIT + 2
    assert queued(redis_client) == []
    # an action that is carried out is always recorded
    done = task_run_retry(user=operator, task_id=failed("workers.tasks.send_invoice"), reason="x")
    assert done.done and OperatorAction.objects.filter(outcome="done").count() == 1


def test_each_person_has_a_limit_of_their_own(redis_client):
    task_id = failed("workers.tasks.send_invoice")
    first, second = user_in("viewer"), user_in("viewer")
    for _ in range(refusals.LIMIT + 3):
        task_run_retry(user=first, task_id=task_id, reason="x")
    task_run_retry(user=second, task_id=task_id, reason="mine")
    assert OperatorAction.objects.filter(user=second).get().reason == "mine"


def test_without_redis_every_refusal_is_recorded(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    viewer = user_in("viewer")
    task_id = failed("workers.tasks.send_invoice")
    for _ in range(refusals.LIMIT + 2):
        task_run_retry(user=viewer, task_id=task_id, reason="x")
    assert OperatorAction.objects.count() == refusals.LIMIT + 2


def test_a_bulk_action_without_the_role_reads_nothing_of_the_selection(redis_client):
    for _ in range(3):
        failed("workers.tasks.send_invoice")
    result = task_runs_bulk(
        user=user_in("viewer"),
        kind="retry",
        reason="x",
        task_filter=TaskFilter(states=["FAILURE"]),
        expected_count=999,  # a mismatch would say how many match: not to this person
    )
    assert not result.permitted
    assert result.message.endswith("may not retry tasks.")
    action = OperatorAction.objects.get()
    assert action.scope.startswith("tasks matching") and action.target_count == 0
    assert queued(redis_client) == []


# -- trace links ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trace_id", "span_id", "link"),
    [
        (TRACE, "00f067aa0ba902b7", (TRACE, "00f067aa0ba902b7")),
        (TRACE, "zzzzzzzzzzzzzzzz", (TRACE, "0" * 16)),
        (TRACE, "00f067aa0ba902b\n", (TRACE, "0" * 16)),
        (TRACE, "-1", (TRACE, "0" * 16)),
        (TRACE, None, (TRACE, "0" * 16)),
        ("nothex" * 5 + "ab", "00f067aa0ba902b7", None),
        ("0" * 32, "00f067aa0ba902b7", None),
    ],
)
def test_a_malformed_trace_or_span_id_is_left_out_of_the_link(trace_id, span_id, link):
    task_id = failed("workers.tasks.send_invoice")
    TaskRun.objects.filter(task_id=task_id).update(trace_id=trace_id, trace_sampled=True)
    TaskAttempt.objects.update_or_create(task_id=task_id, attempt=0, defaults={"span_id": span_id})
    traces = _original_traces(list(TaskRun.objects.filter(task_id=task_id)))
    got = traces.get(task_id)
    assert (None if got is None else (got.trace_id, got.span_id)) == link


def test_a_task_with_a_non_hex_span_id_is_retried(redis_client):
    task_id = new_task_id()
    write_events(
        [
            event("published", task_id, T0, name="workers.tasks.send_invoice", queue="default",
                  args="[7]", kwargs="{}", published_at=T0,
                  traceparent=f"00-{TRACE}-00f067aa0ba902b7-01"),
            event("started", task_id, T0 + 1, retries=0, hostname="w1", span_id="not-hex-span!!!!"),
            event("failed", task_id, T0 + 2, retries=0, exc_type="ValueError", exc_message="x"),
        ]
    )  # fmt: skip
    assert TaskAttempt.objects.get(task_id=task_id).span_id == "not-hex-span!!!!"
    result = task_run_retry(user=user_in("operator"), task_id=task_id, reason="x")
    assert result.failed == {} and result.done == [task_id]
    [message] = queued(redis_client)
    assert message["headers"]["task"] == "workers.tasks.send_invoice"
    assert OperatorAction.objects.get().outcome == "done"

"""Operator actions against the real broker and database: state checks, audit, linking."""

from __future__ import annotations

import json
import threading

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dashboard.filters import TaskFilter
from dashboard.ingest.writer import write_events
from dashboard.models import OperatorAction, OperatorActionTarget, TaskRun
from dashboard.selectors.action_options import bulk_preview, task_action_options
from dashboard.services import (
    CHUNK,
    ActionInputError,
    bulk_scope,
    task_run_cancel,
    task_run_retry,
    task_run_terminate,
    task_runs_bulk,
)
from tasktrail import revocations
from tests.catalog import register_demo_tasks, register_task
from tests.conftest import event, new_task_id

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _shop_catalog() -> None:
    """Retry decides from the shop's task catalog: the demo's tasks, as its worker reports them."""
    register_demo_tasks()


T0 = 1_750_000_000.0


def user_in(role: str) -> User:
    user = User.objects.create_user(f"{role}-{new_task_id()}")
    if role != "nobody":
        user.groups.add(Group.objects.get(name=role))
    return User.objects.get(pk=user.pk)  # fresh permission cache


def failed_invoice(task_id: str | None = None, **fields) -> str:
    task_id = task_id or new_task_id()
    published = {
        "name": "workers.tasks.send_invoice",
        "queue": "default",
        "input_id": "1237",
        "args": "[1237]",
        "kwargs": '{"email": "a@example.com"}',
        "published_at": T0,
        **fields,
    }
    write_events(
        [
            event("published", task_id, T0, **published),
            event("failed", task_id, T0 + 1, exc_type="ValueError", exc_message="boom"),
        ]
    )
    return task_id


def failed_invoices(count: int) -> list[str]:
    """``count`` failed tasks, written in one batch."""
    ids = [new_task_id() for _ in range(count)]
    fields = {"name": "workers.tasks.send_invoice", "queue": "default", "args": "[1]",
              "kwargs": "{}", "published_at": T0}  # fmt: skip
    write_events(
        [event("published", t, T0, **fields) for t in ids]
        + [event("failed", t, T0 + 1, exc_type="ValueError", exc_message="boom") for t in ids]
    )
    return ids


def statements_of_bulk_retry(ids: list[str]) -> int:
    operator = user_in("operator")
    with CaptureQueriesContext(connection) as captured:  # the after-commit writes included
        task_runs_bulk(user=operator, kind="retry", reason="x", task_ids=ids)
    return len(captured.captured_queries)


def queued(client, queue="default"):
    return [json.loads(m) for m in client.lrange(queue, 0, -1)]


def test_retry_publishes_same_args_to_the_same_queue_and_links_both_ways(redis_client):
    operator = user_in("operator")
    old = failed_invoice()
    result = task_run_retry(user=operator, task_id=old, reason="template fixed")
    assert result.refused == {}
    new = result.new_task_ids[old]
    [message] = queued(redis_client)
    assert message["headers"]["id"] == new
    assert message["headers"]["task"] == "workers.tasks.send_invoice"
    assert message["headers"]["tasktrail_retry_of"] == old
    assert TaskRun.objects.get(task_id=old).retried_as == new
    action = OperatorAction.objects.get()
    assert (action.kind, action.outcome, action.reason) == ("retry", "done", "template fixed")
    target = OperatorActionTarget.objects.get()
    assert (target.task_id, target.new_task_id, target.outcome) == (old, new, "done")


def test_second_retry_is_refused_with_a_reason(redis_client):
    operator = user_in("operator")
    old = failed_invoice()
    task_run_retry(user=operator, task_id=old, reason="first")
    second = task_run_retry(user=operator, task_id=old, reason="second")
    assert not second.done
    assert "already retried" in second.refused[old]
    assert len(queued(redis_client)) == 1
    assert OperatorAction.objects.filter(outcome="refused").count() == 1


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (
            {"args": None, "kwargs": None, "args_dropped": "too large: 70000 bytes"},
            "arguments were not kept",
        ),
        (
            {"name": "workers.tasks.gone"},
            "no recent worker of this shop has registered workers.tasks.gone",
        ),
    ],
)
def test_retry_refusals(redis_client, setup, expected):
    operator = user_in("operator")
    task_id = new_task_id()
    fields = {k: v for k, v in setup.items() if v is not None}
    failed_invoice(task_id, **fields)
    if setup.get("args", "") is None:
        TaskRun.objects.filter(task_id=task_id).update(args=None, kwargs=None)
    result = task_run_retry(user=operator, task_id=task_id, reason="why not")
    assert expected in result.refused[task_id]
    assert queued(redis_client) == []


def test_retry_of_a_successful_task_is_refused(redis_client):
    operator = user_in("operator")
    task_id = new_task_id()
    name = "workers.tasks.send_invoice"
    write_events(
        [
            event("published", task_id, T0, name=name, args="[1]", kwargs="{}", published_at=T0),
            event("succeeded", task_id, T0 + 1),
        ]
    )
    result = task_run_retry(user=operator, task_id=task_id, reason="x")
    assert "cannot be retried" in result.refused[task_id]
    assert queued(redis_client) == []


def test_viewer_is_refused_and_audited_and_nothing_is_published(redis_client):
    viewer = user_in("viewer")
    old = failed_invoice()
    result = task_run_retry(user=viewer, task_id=old, reason="please")
    assert not result.permitted
    assert queued(redis_client) == []
    assert OperatorAction.objects.get().outcome == "refused"
    assert TaskRun.objects.get(task_id=old).retried_as is None


def test_reason_is_required():
    operator = user_in("operator")
    with pytest.raises(ActionInputError, match="reason"):
        task_run_retry(user=operator, task_id=failed_invoice(), reason="   ")


def test_cancel_of_a_queued_task_is_kept_durably(redis_client):
    operator = user_in("operator")
    task_id = new_task_id()
    write_events(
        [event("published", task_id, T0, name="workers.tasks.send_invoice", published_at=T0)]
    )
    result = task_run_cancel(user=operator, task_id=task_id, reason="customer cancelled")
    assert result.done == [task_id]
    assert task_id in revocations.remembered(redis_client)
    assert TaskRun.objects.get(task_id=task_id).cancel_requested_at is not None
    again = task_run_cancel(user=operator, task_id=task_id, reason="again")
    assert "already requested" in again.refused[task_id]


def test_cancel_of_a_running_task_is_refused(redis_client):
    operator = user_in("operator")
    task_id = new_task_id()
    write_events([event("started", task_id, T0, retries=0)])
    assert (
        "cannot be cancelled"
        in task_run_cancel(user=operator, task_id=task_id, reason="x").refused[task_id]
    )


def test_terminate_needs_its_own_permission(redis_client):
    task_id = new_task_id()
    write_events([event("started", task_id, T0, retries=0)])
    assert not task_run_terminate(
        user=user_in("operator"), task_id=task_id, reason="hung"
    ).permitted
    assert task_run_terminate(user=user_in("admin"), task_id=task_id, reason="hung").done == [
        task_id
    ]


def test_bulk_retry_on_a_filter_one_audit_row_and_a_target_per_task(redis_client):
    operator = user_in("operator")
    ids = [failed_invoice() for _ in range(3)]
    flt = TaskFilter(states=("FAILURE",), name="workers.tasks.send_invoice")
    scope = bulk_scope(user=operator, kind="retry", task_filter=flt)
    assert sorted(scope.task_ids) == sorted(ids)
    result = task_runs_bulk(user=operator, kind="retry", reason="fixed", task_filter=flt,
                            expected_count=3)  # fmt: skip
    assert sorted(result.done) == sorted(ids)
    assert len(queued(redis_client)) == 3
    action = OperatorAction.objects.get()
    assert (action.bulk, action.target_count, action.outcome) == (True, 3, "done")
    assert "FAILURE" in action.scope


def test_bulk_never_runs_on_an_empty_filter():
    with pytest.raises(ActionInputError, match="never runs on everything"):
        bulk_scope(user=user_in("operator"), kind="retry", task_filter=TaskFilter())


def test_bulk_over_the_cap_is_refused_for_operators_and_allowed_for_admins(settings, redis_client):
    settings.TASKTRAIL_BULK_CAP = 2
    ids = [failed_invoice() for _ in range(3)]
    flt = TaskFilter(states=("FAILURE",))
    with pytest.raises(ActionInputError, match="More than 2"):
        task_runs_bulk(user=user_in("operator"), kind="retry", reason="x", task_filter=flt)
    result = task_runs_bulk(user=user_in("admin"), kind="retry", reason="x", task_filter=flt)
    assert sorted(result.done) == sorted(ids)


def test_bulk_refuses_when_the_selection_changed_since_confirmation(redis_client):
    operator = user_in("operator")
    failed_invoice()
    with pytest.raises(ActionInputError, match="changed"):
        task_runs_bulk(user=operator, kind="retry", reason="x",
                       task_filter=TaskFilter(states=("FAILURE",)), expected_count=5)  # fmt: skip


def test_bulk_retry_runs_as_many_statements_for_forty_tasks_as_for_four(redis_client):
    few, many = failed_invoices(4), failed_invoices(40)
    assert statements_of_bulk_retry(many) == statements_of_bulk_retry(few)


def test_bulk_retry_over_several_chunks_retries_each_and_refuses_the_rest(redis_client):
    operator = user_in("operator")
    ids = failed_invoices(2 * CHUNK + 1)
    succeeded, unknown = ids[CHUNK + 3], new_task_id()
    write_events([event("succeeded", succeeded, T0 + 2)])
    selection = [*ids, unknown]
    result = task_runs_bulk(user=operator, kind="retry", reason="x", task_ids=selection)
    retried = [t for t in ids if t != succeeded]
    assert result.done == retried
    assert result.refused == {
        succeeded: "a SUCCESS task cannot be retried (only failed, revoked, rejected or lost ones)",
        unknown: "no task with this id has been recorded",
    }
    assert len(queued(redis_client)) == len(retried)
    outcomes = dict(OperatorActionTarget.objects.values_list("task_id", "outcome"))
    assert outcomes == {**dict.fromkeys(retried, "done"), succeeded: "refused", unknown: "refused"}
    assert OperatorAction.objects.get().outcome == "partial"


def test_bulk_retry_records_each_target_new_id_and_each_failed_publish(redis_client, monkeypatch):
    from workers import control

    ids = failed_invoices(3)
    publish = control.publish_retry

    def broker_refuses_the_second(**kwargs):
        if kwargs["retry_of"] == ids[1]:
            raise control.BrokerError("queue full")  # refused, not unreachable: the rest go on
        return publish(**kwargs)

    monkeypatch.setattr(control, "publish_retry", broker_refuses_the_second)
    result = task_runs_bulk(user=user_in("operator"), kind="retry", reason="x", task_ids=ids)
    targets = {
        t.task_id: (t.outcome, t.new_task_id, t.message) for t in OperatorActionTarget.objects.all()
    }
    assert targets == {
        ids[0]: ("done", result.new_task_ids[ids[0]], ""),
        ids[1]: ("failed", None, "publish failed: queue full"),
        ids[2]: ("done", result.new_task_ids[ids[2]], ""),
    }
    links = dict(TaskRun.objects.filter(task_id__in=ids).values_list("task_id", "retried_as"))
    assert links == {ids[0]: result.new_task_ids[ids[0]], ids[1]: None,
                     ids[2]: result.new_task_ids[ids[2]]}  # fmt: skip


def test_failed_publish_releases_the_claim_and_is_audited(redis_client, settings, monkeypatch):
    from workers import control

    def broker_down(*args, **kwargs):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(control, "publish_retry", broker_down)  # a broker outage on demand
    operator = user_in("operator")
    old = failed_invoice()
    task_run_retry(user=operator, task_id=old, reason="x")
    action = OperatorAction.objects.get()
    assert action.outcome == "failed" and "broker unreachable" in action.message
    assert TaskRun.objects.get(task_id=old).retried_as is None  # can be retried again


def race(*calls):
    """Run the calls in threads of their own (a connection each), released at the same moment."""
    barrier = threading.Barrier(len(calls))
    results = [None] * len(calls)

    def run(index, call):
        barrier.wait()
        try:
            results[index] = call()
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    return results


def test_two_operators_retrying_at_once_publish_exactly_one_task(redis_client):
    old = failed_invoice()
    users = [user_in("operator"), user_in("operator")]
    results = race(*(lambda u=u: task_run_retry(user=u, task_id=old, reason="race") for u in users))
    assert sorted(len(r.done) for r in results) == [0, 1]
    assert len(queued(redis_client)) == 1
    assert OperatorAction.objects.filter(outcome="done").count() == 1
    assert OperatorAction.objects.filter(outcome="refused").count() == 1


def test_bulk_retry_racing_single_retries_retries_every_task_once(redis_client):
    ids = [failed_invoice() for _ in range(30)]
    overlap = ids[::6]
    bulk_user, single_user = user_in("operator"), user_in("operator")

    def singles():
        return [task_run_retry(user=single_user, task_id=t, reason="single") for t in overlap]

    bulk, single_results = race(
        lambda: task_runs_bulk(user=bulk_user, kind="retry", reason="bulk", task_ids=ids),
        singles,
    )
    new_ids = dict(bulk.new_task_ids)
    for result in single_results:
        new_ids.update(result.new_task_ids)
    published = [
        (m["headers"]["tasktrail_retry_of"], m["headers"]["id"]) for m in queued(redis_client)
    ]
    assert sorted(published) == sorted(new_ids.items())
    assert sorted(new_ids) == sorted(ids)
    linked = dict(TaskRun.objects.filter(task_id__in=ids).values_list("task_id", "retried_as"))
    assert linked == new_ids


def test_a_task_that_opts_out_is_never_retried_by_an_operator(redis_client):
    operator = user_in("operator")
    task_id = failed_invoice(name="workers.tasks.charge_card", args='["PAY-1X", 100]')
    result = task_run_retry(user=operator, task_id=task_id, reason="customer asked")
    assert "opts out" in result.refused[task_id]
    assert queued(redis_client) == []


# -- the page offers what the service does -------------------------------------------------------


def test_page_and_service_give_the_same_reason_for_an_opt_out_task(redis_client):
    operator = user_in("operator")
    task_id = failed_invoice(name="workers.tasks.charge_card", args='["PAY-2X", 100]')
    offered = task_action_options(user=operator, task=TaskRun.objects.get(task_id=task_id))
    result = task_run_retry(user=operator, task_id=task_id, reason="customer asked")
    assert offered["retry"].why_not == result.refused[task_id]


def test_page_offers_retry_where_the_service_retries(redis_client):
    operator = user_in("operator")
    task_id = failed_invoice()
    offered = task_action_options(user=operator, task=TaskRun.objects.get(task_id=task_id))
    result = task_run_retry(user=operator, task_id=task_id, reason="fixed the template")
    assert (offered["retry"].offered, result.done) == (True, [task_id])


def test_retry_is_refused_while_a_terminate_is_pending(redis_client):
    admin = user_in("admin")
    task_id = new_task_id()
    write_events(
        [
            event("published", task_id, T0, name="workers.tasks.send_invoice", queue="default",
                  args="[1]", kwargs="{}", published_at=T0),
            event("started", task_id, T0 + 1, retries=0, hostname="w1"),
        ]
    )  # fmt: skip
    TaskRun.objects.filter(task_id=task_id).update(terminate_requested_at=timezone.now())
    result = task_run_retry(user=admin, task_id=task_id, reason="stuck")
    assert result.refused[task_id] == (
        "a terminate was requested; it can be retried once its worker reports it stopped"
    )
    assert queued(redis_client) == []


def test_bulk_preview_counts_what_the_bulk_action_does(redis_client):
    operator = user_in("operator")
    good = [failed_invoice() for _ in range(2)]
    opted_out = failed_invoice(name="workers.tasks.charge_card", args='["PAY-3X", 100]')
    ids = [*good, opted_out]
    preview = bulk_preview(kind="retry", task_ids=ids)
    result = task_runs_bulk(user=operator, kind="retry", reason="fixed", task_ids=ids)
    assert (preview.acted_on, preview.refused_count) == (len(result.done), len(result.refused))
    assert preview.refused == [(result.refused[opted_out], 1)]


def test_a_retry_goes_to_the_catalogs_queue_only_when_the_row_has_none(redis_client):
    register_task("workers.tasks.send_invoice", hostname="inventory@h", queue="inventory")
    operator = user_in("operator")
    without_queue = failed_invoice(queue=None)
    with_queue = failed_invoice()  # recorded on "default"
    for task_id in (without_queue, with_queue):
        assert task_run_retry(user=operator, task_id=task_id, reason="x").refused == {}
    [to_inventory] = queued(redis_client, "inventory")
    [to_default] = queued(redis_client, "default")
    assert to_inventory["headers"]["tasktrail_retry_of"] == without_queue
    assert to_default["headers"]["tasktrail_retry_of"] == with_queue
    assert TaskRun.objects.get(task_id=without_queue).queue is None  # the default is not stored

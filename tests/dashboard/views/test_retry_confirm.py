"""The retry confirmation shows the exact call (name, queue, every argument, masked ones with their
length, named by the task's code); a refusal to someone without a role shows nothing of the task;
a huge reason is refused before anything is stored. Real database and Redis."""

from __future__ import annotations

import html
import json
import re
import time

import pytest
from celery import Celery
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from dashboard.ingest.catalog import write_catalog
from dashboard.ingest.writer import write_events
from dashboard.models import OperatorAction, TaskRun
from tasktrail.catalog import Report, describe
from tests.catalog import register_demo_tasks
from tests.conftest import event, new_task_id

pytestmark = pytest.mark.django_db(transaction=True)

T0 = 1_750_000_000.0
TOKEN = "tok_live_1234567890"  # 19 characters
CALLBACK = {"task": "workers.tasks.charge_card", "args": ["PAY-9", 500, "tok_inner_secret"],
            "kwargs": {}, "options": {}, "subtask_type": None, "immutable": False}  # fmt: skip


@pytest.fixture(autouse=True)
def _shop_catalog() -> None:
    """The demo's tasks, and a shop's, as their workers report them (parameter names included)."""
    register_demo_tasks()
    app = Celery("confirm-shop", set_as_current=False)

    @app.task(shared=False, name="shop.pay")
    def pay(payment_id, card_token, amount=0): ...

    @app.task(shared=False, name="shop.fan_out")
    def fan_out(order_id, secret_callback): ...

    tasks, _ = describe(app)
    write_catalog(Report("confirm-shop@h", "confirm-shop", time.time(), tuple(tasks)))


def client_for(role: str) -> tuple[Client, User]:
    client = Client()
    user = User.objects.create_user(f"{role}-{new_task_id()}")
    if role != "nobody":
        user.groups.add(Group.objects.get(name=role))
    client.force_login(user)
    return client, user


def failed(name: str, args: list, kwargs: dict | None = None, **fields) -> str:
    task_id = new_task_id()
    write_events(
        [
            event("published", task_id, T0, name=name, queue="payments", args=json.dumps(args),
                  kwargs=json.dumps(kwargs or {}), published_at=T0, **fields),
            event("failed", task_id, T0 + 1, exc_type="ValueError", exc_message="declined"),
        ]
    )  # fmt: skip
    return task_id


def text_of(markup: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


def retry_form(body: str) -> str:
    """The retry confirmation's text: the call shown, up to the end of its form."""
    start = body.index('class="retry-call"')
    return text_of(body[start : body.index("</form>", start)])


def test_the_confirmation_shows_the_exact_call_masked_values_with_their_length():
    # a later event claims other names: the catalog's (from the task's code) are used
    task_id = failed("shop.pay", ["PAY-1", TOKEN], {"amount": 1250, "password": "hunter2"},
                     arg_names="amount,note")  # fmt: skip
    client, _ = client_for("operator")
    body = client.get(reverse("task-detail", args=[task_id])).content.decode()
    shown = retry_form(body)
    assert "shop.pay" in shown and "payments" in shown
    assert "0 payment_id" in shown and '"PAY-1"' in shown
    assert "1 card_token" in shown and "•••• (masked, 19 characters)" in shown
    assert TOKEN not in shown and "hunter2" not in shown
    assert "amount=" in shown and "1250" in shown
    assert "password=" in shown and "•••• (masked, 7 characters)" in shown
    assert "as the task's code names them" in shown
    assert "1 note" not in shown and "0 amount" not in shown  # the event's names are not used


def test_without_names_from_a_worker_the_events_names_are_used_and_said_so():
    task_id = failed("workers.tasks.send_invoice", [7, "tok_abc"], arg_names="order_id,card_x")
    # the demo client predates parameter names in the catalog: as an older worker reports
    from dashboard.models import RegisteredTask

    RegisteredTask.objects.filter(name="workers.tasks.send_invoice").update(arg_names=None)
    client, _ = client_for("operator")
    shown = retry_form(client.get(reverse("task-detail", args=[task_id])).content.decode())
    assert "1 card_x" in shown and "•••• (masked, 7 characters)" in shown
    assert "No worker reported this task's parameter names" in shown


def test_an_argument_that_carries_another_task_is_shown_as_such_even_when_masked():
    # The task's code names the callback's parameter as a secret: masking it would hide what runs.
    task_id = failed("shop.fan_out", ["ORD-1", CALLBACK])
    client, _ = client_for("operator")
    shown = retry_form(client.get(reverse("task-detail", args=[task_id])).content.decode())
    assert "carry other tasks to run: workers.tasks.charge_card" in shown
    assert "1 secret_callback" in shown
    assert "A task signature: runs workers.tasks.charge_card" in shown
    assert '"PAY-9"' in shown and "500" in shown  # its arguments, as charge_card names them
    assert "tok_inner_secret" not in shown and "•••• (masked, 16 characters)" in shown


def test_the_bulk_confirmation_lists_the_calls_those_carrying_tasks_first():
    plain = [failed("shop.pay", [f"PAY-{i}", TOKEN]) for i in range(3)]
    carrying = failed("shop.fan_out", ["ORD-2", CALLBACK])
    client, _ = client_for("operator")
    ids = [*plain, carrying]
    body = client.get(reverse("bulk-confirm"), {"action": "retry", "task_id": ids}).content
    text = text_of(body.decode())
    times = "\N{MULTIPLICATION SIGN}"
    assert f"3 {times} shop.pay" in text and f"1 {times} shop.fan_out" in text
    assert "1 of these retries carry other tasks to run" in text
    assert text.index(carrying) < min(text.index(t) for t in plain)
    assert text.count("•••• (masked, 19 characters)") == 3 and TOKEN not in text


def test_a_builtin_is_offered_no_retry_and_says_why():
    task_id = failed("celery.starmap", [CALLBACK, [["PAY-1", 1, "tok"]]],
                     arg_names="card_token,card_token")  # fmt: skip
    client, _ = client_for("operator")
    body = html.unescape(client.get(reverse("task-detail", args=[task_id])).content.decode())
    assert "Retry is not available: celery.starmap is one of Celery's built-in tasks" in body
    assert 'class="retry-call"' not in body


# -- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize("htmx", [False, True])
def test_a_user_without_a_role_is_refused_without_the_tasks_history_or_data(redis_client, htmx):
    task_id = failed("shop.pay", ["PAY-77", TOKEN])
    operator, _ = client_for("operator")
    operator.post(reverse("task-action", args=[task_id, "retry"]), {"reason": "HISTORY-MARK"})
    nobody, user = client_for("nobody")
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    for kind in ("retry", "cancel", "terminate"):
        response = nobody.post(
            reverse("task-action", args=[task_id, kind]),
            {"reason": "let me", "confirm": "TERMINATE"},
            **headers,
        )
        assert response.status_code == 403
        body = response.content.decode()
        assert f"{user.username} may not {kind} tasks." in body
        for leak in ("HISTORY-MARK", "shop.pay", "PAY-77", "declined", "History", "retried"):
            assert leak not in body, (kind, leak)
    # an input error answers without the task too
    response = nobody.post(reverse("task-action", args=[task_id, "retry"]), {"reason": ""},
                           **headers)  # fmt: skip
    assert response.status_code == (422 if htmx else 400)
    assert "HISTORY-MARK" not in response.content.decode()
    assert "shop.pay" not in response.content.decode()


def test_a_bulk_refusal_without_a_role_says_nothing_of_the_selection(redis_client):
    failed("shop.pay", ["PAY-1", TOKEN])
    nobody, user = client_for("nobody")
    response = nobody.post(
        reverse("bulk-action"),
        {"action": "retry", "reason": "x", "state": "FAILURE", "expected_count": "999"},
    )
    assert response.status_code == 403
    body = response.content.decode()
    assert f"{user.username} may not retry tasks." in body
    assert "999" not in body and "changed since you confirmed" not in body


def test_a_viewer_still_sees_the_panel_with_the_refusal(redis_client):
    task_id = failed("shop.pay", ["PAY-1", TOKEN])
    viewer, user = client_for("viewer")
    response = viewer.post(
        reverse("task-action", args=[task_id, "retry"]), {"reason": "x"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 403
    assert f"{user.username} may not retry tasks." in response.content.decode()
    assert 'id="task-actions"' in response.content.decode()


@pytest.mark.parametrize("role", ["nobody", "viewer", "operator"])
def test_a_huge_reason_over_http_is_refused_and_nothing_large_is_stored(redis_client, role):
    task_id = failed("shop.pay", ["PAY-1", TOKEN])
    client, _ = client_for(role)
    huge = "r" * int(2.4 * 1024 * 1024)
    response = client.post(reverse("task-action", args=[task_id, "retry"]), {"reason": huge})
    assert response.status_code in (302, 400)  # viewers and operators: back to the task page
    assert not OperatorAction.objects.exists()
    bulk = client.post(
        reverse("bulk-action"),
        {"action": "retry", "reason": huge, "task_id": [task_id], "expected_count": "1"},
    )
    assert bulk.status_code == 400 and len(bulk.content) < 20_000
    assert "keep it to 1,000" in bulk.content.decode()
    assert not OperatorAction.objects.exists()
    assert TaskRun.objects.get(task_id=task_id).retried_as is None
    audit, _ = client_for("admin")
    assert len(audit.get(reverse("audit")).content) < 200_000


def test_the_bulk_calls_are_listed_only_to_those_who_may_retry():
    task_id = failed("shop.pay", ["PAY-1", TOKEN])
    viewer, _ = client_for("viewer")
    body = viewer.get(reverse("bulk-confirm"), {"action": "retry", "task_id": [task_id]})
    text = text_of(body.content.decode())
    assert "Your role does not allow this action." in text
    assert "What will be sent" not in text and "PAY-1" not in text

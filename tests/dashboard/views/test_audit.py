"""The Audit page leads to what each action touched: a task, an incident, a bulk action's tasks."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from dashboard.audit_scope import incident_scope
from dashboard.models import OperatorAction, OperatorActionTarget

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer_client() -> Client:
    user = User.objects.create_user("support")
    user.groups.add(Group.objects.get(name="viewer"))
    client = Client()
    client.force_login(user)
    return client


def action(
    kind: str = "retry", *, bulk: bool = False, scope: str = "", targets=()
) -> OperatorAction:
    row = OperatorAction.objects.create(
        username="olga", kind=kind, bulk=bulk, scope=scope, target_count=len(targets),
        reason="customer asked", outcome="done", message="Retrying.",
    )  # fmt: skip
    OperatorActionTarget.objects.bulk_create(
        OperatorActionTarget(action=row, task_id=task_id, outcome=outcome, message=message)
        for task_id, outcome, message in targets
    )
    return row


def test_audit_single_action_links_its_task(viewer_client):
    action(targets=[("task-<1>", "done", "")])
    html = viewer_client.get(reverse("audit")).content.decode()
    assert (
        f'<a href="{reverse("task-detail", args=["task-<1>"])}" class="mono">task-&lt;1&gt;</a>'
        in html
    )


def test_audit_bulk_action_links_its_own_page(viewer_client):
    bulk = action(bulk=True, scope="tasks matching state FAILURE", targets=[("a", "done", "")])
    html = viewer_client.get(reverse("audit")).content.decode()
    link = reverse("audit-action", args=[bulk.pk])
    assert f'<a href="{link}">tasks matching state FAILURE</a>' in html


def test_audit_acknowledge_links_its_incident(viewer_client):
    action("acknowledge", scope=incident_scope(42, "queue emails stuck"))
    html = viewer_client.get(reverse("audit")).content.decode()
    assert (
        f'<a href="{reverse("incidents")}#incident-42">incident 42: queue emails stuck</a>' in html
    )


def test_audit_page_queries_do_not_grow_with_rows(viewer_client):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert viewer_client.get(reverse("audit")).status_code == 200
        return len(captured)

    queries()  # a session's first request also reads the user's zone once and saves it
    for n in range(2):
        action(targets=[(f"few-{n}", "done", "")])
    few = queries()
    for n in range(20):
        action(targets=[(f"many-{n}", "done", "")])
    assert queries() == few


def test_audit_action_page_lists_each_task_with_its_outcome(viewer_client):
    bulk = action(
        bulk=True, scope="2 selected tasks",
        targets=[("t-ok", "done", ""), ("t-no", "refused", "a SUCCESS task cannot be retried")],
    )  # fmt: skip
    OperatorActionTarget.objects.filter(task_id="t-ok").update(new_task_id="t-new")
    html = viewer_client.get(reverse("audit-action", args=[bulk.pk])).content.decode()
    assert html.index("t-no") < html.index("t-ok")  # refused first: what support looks for
    assert f'<a href="{reverse("task-detail", args=["t-ok"])}" class="mono">t-ok</a>' in html
    assert f'retried as <a href="{reverse("task-detail", args=["t-new"])}"' in html
    assert "a SUCCESS task cannot be retried" in html
    assert "<dd>2 (1 refused, 1 done)</dd>" in html


def test_audit_action_page_says_when_the_list_is_cut(viewer_client, monkeypatch):
    monkeypatch.setattr("dashboard.selectors.actions.ACTION_TARGETS_SHOWN", 2)
    monkeypatch.setattr("dashboard.views.audit.ACTION_TARGETS_SHOWN", 2)
    bulk = action(bulk=True, scope="3", targets=[(f"t{n}", "done", "") for n in range(3)])
    html = viewer_client.get(reverse("audit-action", args=[bulk.pk])).content.decode()
    assert "Showing the first 2 of 3" in html
    assert html.count('class="mono">t') == 2


def test_audit_action_page_of_an_unknown_action_is_404(viewer_client):
    assert viewer_client.get(reverse("audit-action", args=[999_999])).status_code == 404

"""The read-only admin over recorded rows: login required, no writes, secrets and HTML safe."""

from __future__ import annotations

import pytest
from django.urls import reverse

from dashboard.ingest.writer import write_events
from dashboard.models import TaskRun
from tests.conftest import event, new_task_id

pytestmark = pytest.mark.django_db


@pytest.fixture
def hostile_task():
    task_id = new_task_id()
    write_events(
        [
            event("published", task_id, 1_750_000_000.0, name="shop.charge", input_id="PAY-1",
                  args='["PAY-1", "tok_live_123"]', kwargs='{"password": "hunter2", "note": "ok"}',
                  arg_names="payment_id,card_token", published_at=1_750_000_000.0),
            event("failed", task_id, 1_750_000_001.0, exc_type="RuntimeError",
                  exc_message="<img src=x onerror=alert(1)>"),
        ]
    )  # fmt: skip
    return TaskRun.objects.get(task_id=task_id)


def test_login_required(client, hostile_task):
    response = client.get(reverse("admin:dashboard_taskrun_changelist"))
    assert response.status_code == 302
    assert "/login/" in response["Location"]


def test_change_page_shows_redacted_args_and_escaped_error(admin_client, hostile_task):
    url = reverse("admin:dashboard_taskrun_change", args=[hostile_task.pk])
    body = admin_client.get(url).content.decode()
    assert "hunter2" not in body and "tok_live_123" not in body
    assert "&lt;img src=x onerror=alert(1)&gt;" in body
    assert "<img src=x" not in body


def test_search_by_input_id(admin_client, hostile_task):
    response = admin_client.get(reverse("admin:dashboard_taskrun_changelist"), {"q": "PAY-1"})
    assert hostile_task.task_id in response.content.decode()


def test_rows_cannot_be_changed(admin_client, hostile_task):
    url = reverse("admin:dashboard_taskrun_change", args=[hostile_task.pk])
    response = admin_client.post(url, {"task_id": "forged", "name": "forged", "state": "SUCCESS"})
    assert response.status_code == 403
    row = TaskRun.objects.get(pk=hostile_task.pk)
    assert (row.task_id, row.name, row.state) == (hostile_task.task_id, "shop.charge", "FAILURE")


def test_rows_cannot_be_deleted(admin_client, hostile_task):
    url = reverse("admin:dashboard_taskrun_delete", args=[hostile_task.pk])
    assert admin_client.post(url, {"post": "yes"}).status_code == 403
    bulk = {"action": "delete_selected", "_selected_action": [hostile_task.pk], "post": "yes"}
    admin_client.post(reverse("admin:dashboard_taskrun_changelist"), bulk)
    assert TaskRun.objects.filter(pk=hostile_task.pk).exists()

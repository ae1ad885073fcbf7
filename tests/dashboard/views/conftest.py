from __future__ import annotations

import time

import pytest
from django.contrib.auth.models import Permission, User

from dashboard.ingest.writer import write_events
from dashboard.models import TaskRun
from tests.conftest import event, new_task_id, story_success

HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture
def viewer(db) -> User:
    user = User.objects.create_user("viewer", password="pw-viewer-123")
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_taskrun", "view_taskattempt"])
    )
    return user


@pytest.fixture
def viewer_client(client, viewer):
    client.force_login(viewer)
    return client


def record(events) -> None:
    write_events(events)


@pytest.fixture
def tasks(db) -> dict[str, TaskRun]:
    """A small history: a success, a failure with hostile text, a retrying task, a chain."""
    now = time.time()
    ok, bad, retrying, parent, child = (new_task_id() for _ in range(5))
    record(story_success(ok, t0=now - 600))
    record(
        [
            event("published", bad, now - 300, name="shop.charge", queue="payments",
                  input_id="PAY-<b>7</b>", args='["PAY-7", "tok_secret_1"]',
                  kwargs='{"password": "hunter2"}', arg_names="payment_id,card_token",
                  published_at=now - 300),
            event("started", bad, now - 299, retries=0, hostname="w<script>@h", pid=3),
            event("failed", bad, now - 298, retries=0, hostname="w<script>@h",
                  exc_type="ValueError", exc_message=HOSTILE, traceback="Traceback: " + HOSTILE,
                  runtime=1.0),
        ]
    )  # fmt: skip
    record(
        [
            event("published", retrying, now - 100, name="shop.ship", queue="default",
                  input_id="SHP-1", published_at=now - 100),
            event("started", retrying, now - 99, retries=0, hostname="w1"),
            event("retried", retrying, now - 98, retries=0, exc_type="Timeout", exc_message="slow"),
        ]
    )  # fmt: skip
    record(
        [
            event("published", parent, now - 50, name="shop.sync", queue="inventory",
                  input_id="SKU-1", published_at=now - 50, root_id=parent),
            event("succeeded", parent, now - 49, runtime=0.5),
            event("published", child, now - 48, name="shop.notify", queue="default",
                  input_id="42", parent_id=parent, root_id=parent, published_at=now - 48),
        ]
    )  # fmt: skip
    return {
        name: TaskRun.objects.get(task_id=task_id)
        for name, task_id in
        [("ok", ok), ("bad", bad), ("retrying", retrying), ("parent", parent), ("child", child)]
    }  # fmt: skip

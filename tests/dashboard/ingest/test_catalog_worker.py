"""Real worker processes report their task catalog when they start and every interval after; the
monitor writes the rows retry decides from."""

from __future__ import annotations

import os
import sys

import pytest
from django.conf import settings

from dashboard.ingest.writer import write_events
from dashboard.models import RegisteredTask, TaskRun
from dashboard.selectors.action_options import retry_precheck
from dashboard.selectors.catalog import TaskCatalog
from tests.conftest import event, new_task_id
from tests.integration.conftest import Worker, wait_until
from tests.processes import Child, spawn

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def hosts_of(name: str) -> set[str]:
    return set(RegisteredTask.objects.filter(name=name).values_list("hostname", flat=True))


def shop_worker(**env: str) -> Child:
    command = [
        sys.executable, "-m", "celery", "-A", "tests.dashboard.ingest.catalog_shop", "worker",
        "-P", "solo", "-Q", "isolated", "-n", "catalog-shop@%h", "-l", "info",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    child = spawn(
        command,
        {
            **os.environ,
            "SHOP_BROKER_URL": settings.REDIS_URL,
            "TASKTRAIL_RECORDER_URL": settings.REDIS_URL,
            "TASKTRAIL_STREAM": settings.TASKTRAIL_STREAM,
            **env,
        },
        group=True,
    )
    try:
        child.output.wait_for(" ready.", 60)
    except AssertionError:
        child.stop()
        raise
    return child


def failed(name: str) -> TaskRun:
    task_id = new_task_id()
    write_events(
        [
            event("published", task_id, 1.75e9, name=name, args="[1]", kwargs="{}"),
            event("failed", task_id, 1.75e9 + 1, exc_type="ValueError", exc_message="boom"),
        ]
    )
    return TaskRun.objects.get(task_id=task_id)


def test_the_demo_worker_reports_its_tasks(redis_client):
    worker = Worker().start()
    try:
        wait_until(redis_client, lambda: hosts_of("workers.tasks.send_invoice"), what="catalog")
    finally:
        worker.stop()
    [hostname] = hosts_of("workers.tasks.send_invoice")
    assert hostname.startswith("itest@")
    rows = {r.name: r for r in RegisteredTask.objects.filter(hostname=hostname)}
    assert "tests.integration.tasks.nap" in rows  # modules given with -I count too
    assert rows["workers.tasks.charge_card"].retryable is False
    assert rows["workers.tasks.send_invoice"].queue == "default"


def test_a_shop_worker_reports_its_tasks_and_retry_decides_from_them(redis_client):
    child = shop_worker(TASKTRAIL_CATALOG_INTERVAL="1")
    try:
        wait_until(redis_client, lambda: hosts_of("shop.sync"), what="the shop's catalog")
        [hostname] = hosts_of("shop.sync")
        first = RegisteredTask.objects.get(hostname=hostname, name="shop.sync").last_reported_at
        wait_until(
            redis_client,
            lambda: RegisteredTask.objects.filter(
                hostname=hostname, name="shop.sync", last_reported_at__gt=first
            ).exists(),
            what="the periodic report",
        )
    finally:
        assert child.stop() == 0
    assert hostname.startswith("catalog-shop@")
    rows = {r.name: r for r in RegisteredTask.objects.filter(hostname=hostname)}
    charge, send, sync = rows["shop.billing.charge"], rows["shop.mail.send"], rows["shop.sync"]
    assert (charge.queue, charge.retryable, charge.max_retries, charge.time_limit) == (
        "billing", False, 5, 30.0,
    )  # fmt: skip
    assert (send.queue, send.soft_time_limit, send.retryable) == ("mail", 10.0, True)
    assert (sync.queue, sync.max_retries, sync.app_name) == ("shop-default", None, "catalog-shop")

    catalog = TaskCatalog()
    assert retry_precheck(catalog, failed("shop.sync")) is None
    assert "opts out" in (retry_precheck(catalog, failed("shop.billing.charge")) or "")
    assert "no recent worker" in (retry_precheck(catalog, failed("shop.unknown")) or "")

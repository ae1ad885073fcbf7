"""The Tasks list's poll: new rows once named, changed rows swapped by id, else nothing."""

from __future__ import annotations

import re
import time

import pytest
from django.urls import reverse

from dashboard.models import TaskRun
from dashboard.pagination import Cursor
from dashboard.selectors.live import row_version
from tests.conftest import event, new_task_id
from tests.dashboard.views.conftest import record

pytestmark = pytest.mark.django_db


def cursor_of(task_id: str) -> str:
    row = TaskRun.objects.get(task_id=task_id)
    return Cursor(row.first_seen_at, row.id).encode()


def published(task_id: str, ts: float, input_id: str = "A-1") -> None:
    record([event("published", task_id, ts, name="shop.send_invoice", queue="default",
                  input_id=input_id, published_at=ts)])  # fmt: skip


def poll(client, newer: str, seen: str = ""):
    query = {"newer": newer} | ({"seen": seen} if seen else {})
    return client.get(reverse("task-live-rows"), query, headers={"HX-Request": "true"})


def row_ids(html: str) -> list[str]:
    return re.findall(r'<tr id="(task-\d+)"', html)


def test_live_rows_answer_204_when_nothing_is_new(viewer_client):
    first = new_task_id()
    published(first, time.time() - 5)
    assert poll(viewer_client, cursor_of(first)).status_code == 204


def test_live_rows_prepend_a_new_named_row(viewer_client):
    first, second = new_task_id(), new_task_id()
    published(first, time.time() - 5)
    published(second, time.time() - 1, input_id="B-2")
    response = poll(viewer_client, cursor_of(first))
    assert row_ids(response.content.decode()) == [f"task-{TaskRun.objects.get(task_id=second).id}"]


def test_live_rows_hold_back_a_row_without_its_name(viewer_client):
    first, nameless = new_task_id(), new_task_id()
    published(first, time.time() - 5)
    record([event("started", nameless, time.time() - 1, retries=0, hostname="w1", pid=1)])
    assert poll(viewer_client, cursor_of(first)).status_code == 204


def test_live_rows_show_a_nameless_row_after_the_grace_period(viewer_client):
    first, nameless = new_task_id(), new_task_id()
    published(first, time.time() - 120)
    record([event("started", nameless, time.time() - 60, retries=0, hostname="w1", pid=1)])
    response = poll(viewer_client, cursor_of(first))
    assert row_ids(response.content.decode()) == [
        f"task-{TaskRun.objects.get(task_id=nameless).id}"
    ]


def test_live_rows_swap_a_changed_row_out_of_band(viewer_client):
    task_id = new_task_id()
    published(task_id, time.time() - 5)
    row = TaskRun.objects.get(task_id=task_id)
    version = row_version(row)
    record([event("started", task_id, time.time() - 1, retries=0, hostname="w1", pid=1)])
    html = poll(viewer_client, cursor_of(task_id), seen=f"{row.id}.{version}").content.decode()
    assert f'<template><tr id="task-{row.id}"' in html
    assert 'hx-swap-oob="true"' in html
    assert "STARTED" in html


def test_live_rows_leave_an_unchanged_row_alone(viewer_client):
    task_id = new_task_id()
    published(task_id, time.time() - 5)
    row = TaskRun.objects.get(task_id=task_id)
    response = poll(viewer_client, cursor_of(task_id), seen=f"{row.id}.{row_version(row)}")
    assert response.status_code == 204


def test_live_rows_refuse_a_malformed_seen_list(viewer_client):
    task_id = new_task_id()
    published(task_id, time.time() - 5)
    assert poll(viewer_client, cursor_of(task_id), seen="x.1").status_code == 400


def test_live_rows_refuse_a_missing_cursor(viewer_client):
    response = viewer_client.get(reverse("task-live-rows"), headers={"HX-Request": "true"})
    assert response.status_code == 400


def test_task_list_rows_carry_their_version_while_they_can_change(viewer_client):
    task_id = new_task_id()
    published(task_id, time.time() - 5)
    row = TaskRun.objects.get(task_id=task_id)
    html = viewer_client.get(reverse("tasks")).content.decode()
    assert f'<tr id="task-{row.id}" data-live="{row_version(row)}">' in html


def test_task_list_rows_show_retry_lineage(viewer_client):
    original, retry = new_task_id(), new_task_id()
    published(original, time.time() - 60)
    published(retry, time.time() - 30)
    TaskRun.objects.filter(task_id=original).update(retried_as=retry)
    TaskRun.objects.filter(task_id=retry).update(retry_of=original)
    html = viewer_client.get(reverse("tasks")).content.decode()
    assert f'retry of <a class="mono" href="/tasks/{original}/"' in html
    assert f'retried as <a class="mono" href="/tasks/{retry}/"' in html


def test_task_page_heading_shows_what_it_retries(viewer_client):
    original, retry = new_task_id(), new_task_id()
    published(original, time.time() - 60)
    published(retry, time.time() - 30)
    TaskRun.objects.filter(task_id=retry).update(retry_of=original)
    html = viewer_client.get(reverse("task-detail", args=[retry])).content.decode()
    heading = html.split('<p class="lineage-line">', 1)[1].split("</p>", 1)[0]
    assert f'retry of <a class="mono" href="/tasks/{original}/"' in heading

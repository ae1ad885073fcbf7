"""CSV export of the Tasks list's filter: its rows, secrets masked, capped, formula-safe."""

from __future__ import annotations

import csv
import io
import time

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from tests.conftest import event, new_task_id
from tests.dashboard.views.conftest import record

pytestmark = pytest.mark.django_db

EXPORT = reverse("tasks-export")


def rows(response) -> list[list[str]]:
    assert response.streaming
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    return list(csv.reader(io.StringIO(text)))


def by_task(table: list[list[str]]) -> dict[str, dict[str, str]]:
    header = table[0]
    return {line[0]: dict(zip(header, line, strict=True)) for line in table[1:]}


def published(task_id: str, ts: float, **fields) -> None:
    fields.setdefault("name", "shop.charge")
    record([event("published", task_id, ts, queue="default", published_at=ts, **fields)])


def test_export_holds_the_filtered_rows_newest_first(viewer_client, tasks):
    table = rows(viewer_client.get(EXPORT, {"queue": "default"}))
    ids = [line[0] for line in table[1:]]
    assert ids == [tasks[k].task_id for k in ("child", "retrying", "ok")]


def test_export_masks_secrets_as_the_pages_do(viewer_client, tasks):
    bad = by_task(rows(viewer_client.get(EXPORT, {"state": "FAILURE"})))[tasks["bad"].task_id]
    assert bad["args"] == '["PAY-7","••••"]'
    assert bad["kwargs"] == '{"password": "••••"}'
    assert bad["exc_message"] == "<img src=x onerror=alert(1)>"


def test_export_is_an_attachment_not_cached(viewer_client, tasks):
    response = viewer_client.get(EXPORT)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="tasktrail-tasks-')
    assert response["Cache-Control"] == "no-store"


@pytest.mark.parametrize("start", ["=", "+", "-", "@"])
def test_export_cells_that_a_spreadsheet_would_run_read_as_text(viewer_client, start):
    task_id = new_task_id()
    published(task_id, time.time(), input_id=f'{start}HYPERLINK("http://x")')
    [line] = by_task(rows(viewer_client.get(EXPORT))).values()
    assert line["input_id"] == f'\'{start}HYPERLINK("http://x")'


def test_export_cells_starting_with_a_tab_read_as_text(viewer_client):
    # ids lose control characters at ingest; an error message keeps its tabs
    task_id, now = new_task_id(), time.time()
    published(task_id, now, input_id="42")
    record([event("failed", task_id, now + 1, retries=0, exc_message='\tHYPERLINK("http://x")')])
    [line] = by_task(rows(viewer_client.get(EXPORT))).values()
    assert line["exc_message"] == '\'\tHYPERLINK("http://x")'


def test_export_cut_at_the_cap_says_so_in_its_last_line(viewer_client, settings):
    settings.TASKTRAIL_EXPORT_MAX_ROWS = 2
    now = time.time()
    for n in range(3):
        published(new_task_id(), now - n)
    table = rows(viewer_client.get(EXPORT))
    assert len(table) == 1 + 2 + 1
    assert table[-1] == [
        "# cut at 2 rows (TASKTRAIL_EXPORT_MAX_ROWS): narrow the filter for the rest"
    ]


def test_export_at_exactly_the_cap_is_not_cut(viewer_client, settings):
    settings.TASKTRAIL_EXPORT_MAX_ROWS = 2
    now = time.time()
    for n in range(2):
        published(new_task_id(), now - n)
    table = rows(viewer_client.get(EXPORT))
    assert [line[0].startswith("t-") for line in table[1:]] == [True, True]


def test_export_of_an_unknown_state_is_400(viewer_client):
    assert viewer_client.get(EXPORT, {"state": "NOPE"}).status_code == 400


def test_export_needs_a_login(client):
    response = client.get(EXPORT)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_export_refuses_a_user_without_the_viewer_role(client):
    client.force_login(User.objects.create_user("nobody"))
    assert client.get(EXPORT).status_code == 403


def test_tasks_page_links_the_export_of_its_filter(viewer_client, tasks):
    html = viewer_client.get(reverse("tasks"), {"queue": "default"}).content.decode()
    assert f'href="{EXPORT}?queue=default" download>Export CSV</a>' in html


def test_export_of_a_lone_surrogate_keeps_streaming(viewer_client: Client, db):
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL text cannot hold a lone surrogate")
    published(new_task_id(), time.time(), input_id="a\udcffb")
    [line] = by_task(rows(viewer_client.get(EXPORT))).values()
    assert line["input_id"] == "a\\udcffb"

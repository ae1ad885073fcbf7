"""The Retention page: admins only, the settings, the tables, the next pass and the last one."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from dashboard.models import TaskRun
from dashboard.retention.runner import run_pass
from tests.dashboard.retention import rows
from tests.dashboard.retention.rows import audit, incident, task
from tests.security.conftest import client_for

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _rows_aged_from_now(monkeypatch) -> None:
    monkeypatch.setattr(rows, "NOW", timezone.now())


def page(role: str = "admin") -> str:
    response = client_for(role).get(reverse("retention"))
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_only_admins_see_the_page_and_its_link(redis_client, role):
    assert client_for(role).get(reverse("retention")).status_code == 403
    assert reverse("retention") not in client_for(role).get(reverse("audit")).content.decode()
    assert (
        f'href="{reverse("retention")}"'
        in client_for("admin").get(reverse("audit")).content.decode()
    )


def test_page_shows_settings_tables_and_what_the_next_pass_removes(redis_client, settings):
    settings.TASKTRAIL_RETENTION_DAYS = 7
    for days in (8, 9, 10):
        task("SUCCESS", finished=days, attempts=2)
    task("SUCCESS", finished=1)
    audit(500, targets=2)
    incident(600, 500)
    incident(3, None)
    html = page()
    assert "TASKTRAIL_RETENTION_DAYS" in html and "7 days" in html
    assert "30 days" in html and "400 days" in html
    row = html.split('<th scope="row">TaskRun</th>')[1].split("</tr>")[0]
    assert '<td class="num">4</td>' in row or "about 4" in row  # PostgreSQL: its estimate
    assert row.rstrip().endswith('<td class="num">3</td>')
    attempts = html.split('<th scope="row">TaskAttempt</th>')[1].split("</tr>")[0]
    assert "removed with its task" in attempts and attempts.rstrip().endswith(">6</td>")
    incidents = html.split('<th scope="row">AlertIncident</th>')[1].split("</tr>")[0]
    assert incidents.rstrip().endswith(">1</td>")  # the resolved one; the open one stays
    assert "No pass has run yet." in html
    assert TaskRun.objects.count() == 4  # looking changes nothing


def test_next_pass_count_says_more_than_past_its_cap(redis_client, monkeypatch):
    import dashboard.selectors.retention as selector

    monkeypatch.setattr(selector, "NEXT_PASS_CAP", 2)
    for days in (20, 21, 22):
        task("SUCCESS", finished=days)
    row = page().split('<th scope="row">TaskRun</th>')[1].split("</tr>")[0]
    assert "more than 2" in row


def test_last_pass_figures_and_next_run_time(redis_client):
    for days in (20, 21):
        task("FAILURE", finished=days + 20, attempts=3)
    next_at = timezone.now() + dt.timedelta(minutes=5)
    run_pass(redis_client, next_run_at=next_at)
    html = page()
    assert "No pass has run yet." not in html
    assert "TaskRun 2" in html and "TaskAttempt 6" in html
    assert "Next pass:" in html and "then every 5m 00s" in html

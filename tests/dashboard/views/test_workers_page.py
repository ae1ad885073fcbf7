"""The Workers page: rows in, page out; who may see it; the release banner and the unregistered-name
warning; hostile and huge values from heartbeats rendered as text that fits."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

import pytest
from django.contrib.auth.models import Group, User
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from dashboard.models import RegisteredTask, TaskRun, UserPreference
from dashboard.selectors.workers import (
    MAX_RUNNING_LINKS,
    WorkerGroup,
    WorkersOverview,
    workers_overview,
)
from tests.dashboard.views.conftest import HOSTILE
from tests.worker_rows import count_minute, make_worker

pytestmark = pytest.mark.django_db

URL = reverse("workers")
POLL = {"HX-Request": "true"}


def ago(**delta: float) -> dt.datetime:
    return timezone.now() - dt.timedelta(**delta)


def waiting(name: str, task_id: str, *, queue: str = "default") -> TaskRun:
    at = ago(minutes=3)
    return TaskRun.objects.create(
        task_id=task_id, name=name, queue=queue, state="PENDING", first_seen_at=at,
        published_at=at, updated_at=at,
    )  # fmt: skip


def page(client, **headers: str) -> str:
    response = client.get(URL, headers=headers)
    assert response.status_code == 200
    return response.content.decode()


def test_anonymous_is_sent_to_the_login_page_for_the_page_and_its_poll(client):
    for headers in ({}, POLL):
        response = client.get(URL, headers=headers)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_a_login_without_the_viewer_role_is_refused(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("nobody"))
    assert client.get(URL).status_code == 403


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
def test_every_role_may_see_the_page(client, role):
    user = User.objects.create_user(f"r-{role}")
    user.groups.add(Group.objects.get(name=role))
    client.force_login(user)
    make_worker("w1@shop-1")
    assert "w1@shop-1" in page(client)


def test_the_navigation_links_the_page(viewer_client):
    body = page(viewer_client)
    assert f'<a href="{URL}" aria-current="page">Workers</a>' in body


def test_no_heartbeat_yet_says_what_to_do(viewer_client):
    body = page(viewer_client)
    assert "No worker has sent a heartbeat yet" in body
    assert "tasktrail.install(app)" in body
    assert 'hx-get="/workers/"' in body  # keeps polling: the first worker appears by itself


def test_a_worker_row_shows_what_its_heartbeats_said(viewer_client):
    running = [f"run-{i:02d}-aaaaaaaa" for i in range(MAX_RUNNING_LINKS + 2)]
    make_worker(
        "w1@shop-1", pool="prefork", concurrency=8, queues=["default", "inventory"],
        running=running, running_count=14, release="2026.12.1", celery_version="5.5.3",
        kombu_version="5.5.4", python_version="3.12.3", pid=4121,
        started_at=ago(hours=3, minutes=2, seconds=10),
    )  # fmt: skip
    count_minute("w1@shop-1", 2, processed=40, failed=3)
    count_minute("w1@shop-1", 75, processed=999, failed=999)  # over an hour ago

    body = page(viewer_client)

    assert "w1@shop-1" in body and "pid 4121" in body and "app shop" in body
    assert re.search(r"up 3h 0[12]m", body)
    assert "prefork" in body and "concurrency 8" in body
    assert '<a class="mono" href="/tasks/?queue=inventory" title="inventory">inventory</a>' in body
    assert '<span class="run-count">14</span>' in body
    for task_id in running[:MAX_RUNNING_LINKS]:
        assert f'href="{reverse("task-detail", args=[task_id])}"' in body
    assert reverse("task-detail", args=[running[-1]]) not in body  # bounded
    assert "and 4 more" in body and "/tasks/?worker=w1%40shop-1&amp;state=STARTED" in body
    assert "40 done" in body and "3 failed" in body and "999" not in body
    assert "2026.12.1" in body and "Celery 5.5.3" in body and "kombu 5.5.4" in body
    assert "Python 3.12.3" in body
    assert '<time class="when"' in body


def test_groups_read_gone_then_online_then_stopped_with_their_times(viewer_client):
    make_worker("up@h")
    make_worker("bye@h", "offline", stopped_at=ago(minutes=7), last_heartbeat_at=ago(minutes=7))
    make_worker("lost@h", "gone", gone_at=ago(minutes=4), last_heartbeat_at=ago(minutes=5))
    body = page(viewer_client)
    gone, online, stopped = (
        body.index('id="workers-gone"'),
        body.index('id="workers-online"'),
        body.index('id="workers-offline"'),
    )
    assert gone < online < stopped
    assert "Stopped (said goodbye) · 1" in body and "Gone (heartbeats stopped) · 1" in body
    assert re.search(r'gone <time class="when"[^>]*>[^<]*<span class="ago">4m ago', body)
    assert re.search(r'stopped <time class="when"[^>]*>[^<]*<span class="ago">7m ago', body)


def test_times_read_in_the_users_zone(viewer_client, viewer):
    UserPreference.objects.create(user=viewer, time_zone="Asia/Tokyo")
    make_worker("w1@h")
    assert "Asia/Tokyo" in page(viewer_client)  # the time's title names the zone
    assert " JST " in page(viewer_client)


def test_the_poll_answers_the_panel_only(viewer_client):
    make_worker("w1@h")
    body = page(viewer_client, **POLL)
    assert "w1@h" in body
    assert "<html" not in body and "<nav" not in body


def test_a_release_mix_among_live_workers_shows_a_banner_with_the_hosts(viewer_client):
    for host in ("w1@h", "w2@h", "w3@h"):
        make_worker(host, release="2026.12.1")
    make_worker("w4@h", release="2026.11.30")
    body = page(viewer_client)
    text = re.sub(r"<[^>]+>|\s+", " ", body)
    text = re.sub(r" +", " ", text)
    assert "app shop: 3 workers on release 2026.12.1 : w1@h, w2@h, w3@h; " in text
    assert "1 on release 2026.11.30 : w4@h." in text


def test_no_banner_when_live_workers_agree(viewer_client):
    make_worker("w1@h", release="2026.12.1")
    make_worker("old@h", "offline", release="2026.11.30", stopped_at=ago(minutes=1))
    assert "release-mix" not in page(viewer_client)


def test_a_waiting_name_no_live_worker_registered_is_warned_about(viewer_client):
    make_worker("w1@h")
    RegisteredTask.objects.create(
        hostname="w1@h", name="shop.known", app_name="shop", last_reported_at=timezone.now()
    )
    waiting("shop.known", "t-known")
    waiting("shop.send_invoice_v2", "t-new-1", queue="emails")
    waiting("shop.send_invoice_v2", "t-new-2", queue="emails")
    body = page(viewer_client)
    assert "Tasks waiting under a name no live worker has registered" in body
    assert (
        '<a class="mono" href="/tasks/?name=shop.send_invoice_v2&amp;state=PENDING&amp;window=1h">'
        "shop.send_invoice_v2</a>: 2 waiting on emails" in body
    )
    assert "shop.known</a>" not in body


def test_no_warning_when_every_waiting_name_is_registered(viewer_client):
    make_worker("w1@h")
    RegisteredTask.objects.create(
        hostname="w1@h", name="shop.known", app_name="shop", last_reported_at=timezone.now()
    )
    waiting("shop.known", "t-known")
    assert "no live worker has registered" not in page(viewer_client)


def test_hostile_values_from_heartbeats_are_text(viewer_client):
    make_worker(
        HOSTILE, app_name=HOSTILE, queues=[HOSTILE, '"><script>alert(2)</script>'],
        running=['"><img src=y onerror=alert(3)>'], running_count=1, release=HOSTILE,
        celery_version=HOSTILE, kombu_version="<b>5</b>", python_version="<i>3</i>",
        pool="<u>p</u>",
    )  # fmt: skip
    make_worker("w2@h", app_name=HOSTILE, release="other")  # a banner naming them too
    waiting(HOSTILE, "t-hostile", queue=HOSTILE)
    body = page(viewer_client)
    for raw in (HOSTILE, "<script>alert(2)", "<img src=y", "<b>5</b>", "<i>3</i>", "<u>p</u>"):
        assert raw not in body
    assert "&lt;img src=x onerror=alert(1)&gt;" in body
    assert "release-mix" in body and "Tasks waiting under a name" in body


def test_a_600_character_hostname_is_shortened_in_the_row_and_kept_whole_in_its_title():
    make_worker("w1@h", queues=["q" * 600], release="r" * 255)
    overview = workers_overview()
    (group,) = overview.groups
    hostname = "h" * 590 + "@shop-1.internal"  # longer than the column stores: built in memory
    worker = dataclasses.replace(group.workers[0], hostname=hostname)
    shown = WorkersOverview(
        groups=[WorkerGroup(status="online", label="Online", workers=[worker], total=1)],
        release_mixes=[],
        unregistered=overview.unregistered,
    )
    html = render_to_string("dashboard/partials/workers_panel.html", {"overview": shown})
    link = re.search(r'<a class="hostname" href="[^"]*" title="([^"]*)">([^<]*)</a>', html)
    assert link is not None
    assert link.group(1) == hostname
    assert len(link.group(2)) <= 80 and link.group(2).endswith("…")
    assert 'class="grid workers"' in html  # fixed column widths (static/css/tasktrail.css)
    queue = re.search(r'<a class="mono" href="/tasks/\?queue=q+" title="(q+)">(q+…)</a>', html)
    assert queue is not None  # the queue name is shortened too, whole in its title
    assert (len(queue.group(1)), len(queue.group(2))) == (600, 60)

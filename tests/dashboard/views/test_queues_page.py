"""The Queues page and /metrics show what the monitor measured, and ask Redis for nothing else:
no keyspace SCAN, no broadcast to the workers, no queue-depth reads, no new connection."""

from __future__ import annotations

import re
import time

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from dashboard import redis_keys
from dashboard.selectors.queues import QueueInfo
from tests.dashboard.views.redis_commands import command_log, connections
from tests.dashboard.views.snapshots import write_heartbeat, write_snapshot

pytestmark = pytest.mark.django_db

TOKEN = "s3cret-token"
CHECKED = {
    "default": {"state": "warning", "words": "oldest message waiting 2m05s", "depth": 7,
                "oldest_age": 125.0, "consumers": 2, "finished_per_minute": 1.5},
    "payments": {"state": "ok", "words": "0 waiting", "depth": 0, "oldest_age": None,
                 "consumers": None, "finished_per_minute": 0.0},
}  # fmt: skip
# What a page must never send: the keyspace scan for kombu's bindings, Celery's remote-control
# broadcast (a PUBLISH on the pidbox channel) and the per-queue depth reads.
FORBIDDEN = {"SCAN", "KEYS", "PUBLISH", "LLEN", "LINDEX", "SMEMBERS"}
READ_SNAPSHOT = f"GET {redis_keys.alert_snapshot(settings.TASKTRAIL_STREAM)}"
READ_HEARTBEATS = f"HGETALL {redis_keys.monitors(settings.TASKTRAIL_STREAM)}"
READ_TRIMMED = f"HGETALL {redis_keys.stream_trimmed(settings.TASKTRAIL_STREAM)}"  # same round trip


@pytest.fixture
def metrics_client(settings):
    settings.TASKTRAIL_METRICS_TOKEN = TOKEN
    return Client(headers={"Authorization": f"Bearer {TOKEN}"})


@pytest.fixture(params=["page", "poll", "metrics"])
def fetch(request, viewer_client, metrics_client):
    """One request of the Queues page, its htmx poll, or /metrics."""
    if request.param == "metrics":
        return lambda: metrics_client.get(reverse("metrics"))
    headers = {"HX-Request": "true"} if request.param == "poll" else {}
    return lambda: viewer_client.get(reverse("queues"), headers=headers)


def test_queues_page_shows_the_snapshots_figures(viewer_client, redis_client, tasks):
    write_snapshot(redis_client, CHECKED, age=3)
    response = viewer_client.get(reverse("queues"))
    assert response.context["overview"].queues == [
        QueueInfo("default", 7, 125.0, 2, 1, "warning", "oldest message waiting 2m05s"),
        QueueInfo("payments", 0, None, None, 1, "ok", "0 waiting"),
    ]
    body = response.content.decode()
    assert (
        '<td class="num">7</td>\n      <td class="num">2m 05s</td>\n      <td class="num">2</td>'
        in body
    )
    assert '<span title="The workers did not answer the check">?</span>' in body


def test_queues_page_shows_the_snapshots_age_in_seconds(viewer_client, redis_client, db):
    written = write_snapshot(redis_client, CHECKED, age=4)
    body = viewer_client.get(reverse("queues")).content.decode()
    elapsed = time.time() - written
    shown = re.search(r"Measured by the monitor (\d+) s ago\.", body)
    assert shown is not None
    assert 4 <= int(shown.group(1)) <= round(elapsed)


def test_queues_page_shows_an_older_snapshots_age_in_hours(viewer_client, redis_client, db):
    write_snapshot(redis_client, CHECKED, age=2 * 3600 + 10, every=3600)
    body = viewer_client.get(reverse("queues")).content.decode()
    assert "Measured by the monitor 2h 00m ago." in body


def test_queues_page_without_a_snapshot_says_the_monitor_is_not_running(
    viewer_client, redis_client
):
    response = viewer_client.get(reverse("queues"), headers={"HX-Request": "true"})
    body = response.content.decode()
    assert "there is no recent one. The monitor is not running" in body
    assert "<table" not in body


def test_queues_page_without_a_snapshot_says_the_checks_are_off(viewer_client, redis_client):
    write_heartbeat(redis_client)
    body = viewer_client.get(reverse("queues")).content.decode()
    assert "The monitor is running with its checks off" in body
    assert "<table" not in body


def test_queues_page_with_a_stale_snapshot_says_stale(viewer_client, redis_client, db):
    write_snapshot(redis_client, CHECKED, age=50, every=10)
    response = viewer_client.get(reverse("queues"))
    body = response.content.decode()
    assert "<strong>stale</strong>, the monitor checks every 10 s and has not checked since" in body
    assert "The monitor is not running" in body
    assert [(q.name, q.depth, q.state) for q in response.context["overview"].queues] == [
        ("default", 7, None),
        ("payments", 0, None),
    ]
    assert "qstate-warning" not in body and "qstate-unknown" in body


def test_queues_page_with_a_snapshot_of_no_queue_says_so(viewer_client, redis_client, db):
    write_snapshot(redis_client, {})
    body = viewer_client.get(reverse("queues")).content.decode()
    assert "The monitor's latest check found no queue." in body


def test_a_request_sends_no_scan_broadcast_nor_depth_read(fetch, redis_client):
    write_snapshot(redis_client, CHECKED)
    write_heartbeat(redis_client)
    cache.clear()  # nothing cached from an earlier request
    with command_log() as log:
        assert fetch().status_code == 200
        sent = log.read()
    assert [c.text for c in sent if c.name in FORBIDDEN or "pidbox" in c.text] == []
    assert READ_SNAPSHOT in [c.text for c in sent]


def test_a_later_request_reads_the_snapshot_and_the_heartbeats_only(fetch, redis_client, request):
    write_snapshot(redis_client, CHECKED)
    write_heartbeat(redis_client)
    fetch()
    with command_log() as log:
        fetch()
        sent = log.read()
    pages = [READ_TRIMMED] if request.node.callspec.params["fetch"] != "metrics" else []
    assert sorted(c.text for c in sent) == [READ_SNAPSHOT, READ_HEARTBEATS, *pages]


def test_a_later_request_opens_no_redis_connection(fetch, redis_client):
    write_snapshot(redis_client, CHECKED)
    fetch()  # the first one may connect
    with command_log() as log:
        before = connections(redis_client)
        log.read()  # leaves out the test's own CLIENT LIST
        fetch()
        sent = log.read()
        after = connections(redis_client)
    assert sent != []
    assert {c.client for c in sent} <= before
    assert after == before

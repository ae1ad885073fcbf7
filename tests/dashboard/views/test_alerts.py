"""Incidents page, the open-incidents banner, queue states and /metrics."""

from __future__ import annotations

import datetime as dt
import json
import re
import time

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from dashboard import redis_keys
from dashboard.alerts import rules
from dashboard.alerts.incidents import sync_incidents
from dashboard.models import AlertIncident
from tests.dashboard.views.conftest import HOSTILE
from tests.dashboard.views.snapshots import write_snapshot
from tests.overview_figures import measure_overview

pytestmark = pytest.mark.django_db


def open_incident(subject: str = "emails", words: str = "342 waiting, no consumer") -> None:
    verdict = rules.Verdict(
        rules.QUEUE_STUCK, subject, "stuck", words=words, cause="No worker consumes it."
    )
    sync_incidents([verdict], set(), timezone.now() - dt.timedelta(minutes=7))


def snapshot(redis_client, queues: dict[str, dict]) -> None:
    data = {"at": time.time(), "every": 10, "queues": queues, "workers": 1, "redis_seconds": 0.001}
    redis_client.set(redis_keys.alert_snapshot(settings.TASKTRAIL_STREAM), json.dumps(data))


def test_incidents_page_needs_the_viewer_permission(client, django_user_model):
    url = reverse("incidents")
    assert client.get(url).status_code == 302
    client.force_login(django_user_model.objects.create_user("nobody"))
    assert client.get(url).status_code == 403


def test_incidents_page_lists_open_and_history_and_escapes(viewer_client):
    open_incident(HOSTILE, words=f"3 waiting {HOSTILE}")
    open_incident("reports")
    resolved = AlertIncident.objects.get(subject="reports")
    resolved.resolved_at = timezone.now()
    resolved.last_error = "SMTPDataError: 451 try later"
    resolved.notify_attempts = 2
    resolved.save()
    response = viewer_client.get(reverse("incidents"))
    body = response.content.decode()
    assert response.status_code == 200
    assert [i.subject for i in response.context["page"].open] == [HOSTILE]
    assert [i.subject for i in response.context["page"].history] == ["reports"]
    assert HOSTILE not in body and "&lt;img src=x onerror=alert(1)&gt;" in body
    assert "Mail failed 2\N{MULTIPLICATION SIGN}: SMTPDataError: 451 try later" in body
    assert viewer_client.get(reverse("incidents"), {"rule": "nope"}).status_code == 400
    only_workers = viewer_client.get(reverse("incidents"), {"rule": rules.WORKER_LOST})
    assert only_workers.context["page"].open == []


def test_banner_on_every_page_while_an_incident_is_open(viewer_client, redis_client):
    assert "open incident" not in viewer_client.get(reverse("tasks")).content.decode()
    open_incident(HOSTILE)
    body = viewer_client.get(reverse("tasks")).content.decode()
    assert "1 open incident</a>" in body
    assert f"queue {HOSTILE} stuck" not in body
    assert "queue &lt;img src=x onerror=alert(1)&gt; stuck" in body
    partial = viewer_client.get(reverse("tasks"), headers={"HX-Request": "true"})
    assert "open incident" not in partial.content.decode()  # partials carry no banner


def test_the_banner_costs_one_query(viewer_client, django_assert_num_queries, rf, viewer):
    from dashboard.context_processors import alerts

    open_incident()
    request = rf.get("/")
    request.user = viewer
    viewer.has_perm("dashboard.view_taskrun")  # permissions cached, as after the view's check
    context = alerts(request)
    with django_assert_num_queries(1):
        assert len(context["open_incidents"]) == 1


def test_queue_states_on_the_queues_page_and_the_overview(viewer_client, redis_client, tasks):
    snapshot(
        redis_client,
        {
            "default": {
                "state": "stuck",
                "words": "oldest message waiting 7m12s",
                "consumers": 0,
                "depth": 3,
            },
            "payments": {"state": "ok", "words": "0 waiting", "consumers": 1, "depth": 0},
        },
    )
    queues = viewer_client.get(reverse("queues")).content.decode()
    assert 'class="badge qstate-stuck" title="oldest message waiting 7m12s"' in queues
    measure_overview(client=redis_client)
    overview = viewer_client.get(reverse("overview")).content.decode()
    assert 'class="badge qstate-ok"' in overview and "qstate-stuck" in overview


def test_no_recent_check_shows_no_state(viewer_client, redis_client, tasks):
    snapshot(redis_client, {"default": {"state": "stuck", "words": "old"}})
    redis_client.set(
        redis_keys.alert_snapshot(settings.TASKTRAIL_STREAM),
        json.dumps({"at": time.time() - 3600, "every": 10, "queues": {"default": {}}}),
    )
    body = viewer_client.get(reverse("queues")).content.decode()
    assert "qstate-stuck" not in body and "qstate-unknown" in body
    assert "<strong>stale</strong>" in body


def test_metrics_are_off_without_a_token(client, settings):
    settings.TASKTRAIL_METRICS_TOKEN = ""
    assert client.get(reverse("metrics")).status_code == 404


def test_metrics_need_the_bearer_token(client, settings):
    settings.TASKTRAIL_METRICS_TOKEN = "s3cret-token"
    assert client.get(reverse("metrics")).status_code == 401
    wrong = client.get(reverse("metrics"), headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong["WWW-Authenticate"].startswith("Bearer")
    basic = client.get(reverse("metrics"), headers={"Authorization": "Basic s3cret-token"})
    assert basic.status_code == 401


def test_metrics_export_queues_tasks_incidents_and_the_monitor(
    client, settings, redis_client, tasks
):
    settings.TASKTRAIL_METRICS_TOKEN = "s3cret-token"
    # one message on the broker: the exported depth is the monitor's (2), not a read of the broker
    redis_client.lpush("default", json.dumps({"headers": {"tasktrail_published": time.time()}}))
    write_snapshot(
        redis_client,
        {"default": {"state": "warning", "words": "x", "depth": 2, "oldest_age": 5.0,
                     "consumers": 2, "finished_per_minute": 0.5}},
        age=20,
        stream={"lag_entries": 3, "lag_seconds": 1.5},
    )  # fmt: skip
    redis_client.hset(
        settings.TASKTRAIL_STREAM + ":monitors",
        "host-1",
        json.dumps({"at": time.time(), "events": 1234, "rejected": 2, "lag": 0}),
    )
    open_incident()
    response = client.get(reverse("metrics"), headers={"Authorization": "Bearer s3cret-token"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    text = response.content.decode()
    for line in [
        'tasktrail_queue_depth{queue="default"} 2.0',
        'tasktrail_queue_oldest_age_seconds{queue="default"} 5.0',
        'tasktrail_queue_consumers{queue="default"} 2.0',
        'tasktrail_queue_finished_per_minute{queue="default"} 0.5',
        'tasktrail_queue_state{queue="default",state="warning"} 1.0',
        'tasktrail_queue_state{queue="default",state="stuck"} 0.0',
        'tasktrail_tasks{state="STARTED"} 0.0',
        'tasktrail_tasks{state="RETRY"} 1.0',
        'tasktrail_incidents_open{rule="queue_stuck"} 1.0',
        "tasktrail_monitors 1.0",
        'tasktrail_monitor_events_total{monitor="host-1"} 1234.0',
        "tasktrail_monitor_lag_entries 3.0",
        "tasktrail_monitor_lag_seconds 1.5",
        "tasktrail_broker_up 1.0",
    ]:
        assert line in text, line
    assert 20 <= check_age(text) <= 20 + (time.time() - started(redis_client))


def started(redis_client) -> float:
    """When the snapshot now in Redis was taken."""
    raw = redis_client.get(redis_keys.alert_snapshot(settings.TASKTRAIL_STREAM))
    return float(json.loads(raw)["at"])


def check_age(text: str) -> float:
    found = re.search(r"^tasktrail_alert_check_age_seconds (\S+)$", text, re.MULTILINE)
    assert found is not None
    return float(found.group(1))


def test_metrics_from_a_stale_check_export_its_age_and_no_queue_figures(
    client, settings, redis_client
):
    settings.TASKTRAIL_METRICS_TOKEN = "s3cret-token"
    write_snapshot(
        redis_client,
        {"default": {"state": "ok", "depth": 2, "consumers": 1}},
        age=50,
        stream={"lag_entries": 3, "lag_seconds": 1.5},
    )
    text = client.get(reverse("metrics"), headers={"Authorization": "Bearer s3cret-token"})
    text = text.content.decode()
    assert check_age(text) >= 50
    assert "tasktrail_queue_depth{" not in text and "tasktrail_queue_state{" not in text
    assert "tasktrail_monitor_lag_entries 3.0" not in text


def test_metrics_without_a_check_export_no_check_age(client, settings, redis_client):
    settings.TASKTRAIL_METRICS_TOKEN = "s3cret-token"
    text = client.get(reverse("metrics"), headers={"Authorization": "Bearer s3cret-token"})
    text = text.content.decode()
    assert "tasktrail_broker_up 1.0" in text
    assert re.search(r"^tasktrail_alert_check_age_seconds ", text, re.MULTILINE) is None
    assert "tasktrail_queue_depth{" not in text

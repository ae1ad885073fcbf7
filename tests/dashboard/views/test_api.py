from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from dashboard.services import api_token_create
from tests.dashboard.views.conftest import HOSTILE

pytestmark = pytest.mark.django_db


def test_api_requires_authentication(client, tasks):
    response = client.get(reverse("api-tasks"))
    assert response.status_code == 401
    assert response.json()["error"]
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_api_with_session(viewer_client, tasks):
    data = viewer_client.get(reverse("api-tasks")).json()
    assert {t["task_id"] for t in data["results"]} == {t.task_id for t in tasks.values()}
    assert data["next"] is None


def test_api_with_bearer_token(client, viewer, tasks):
    token = api_token_create(user=viewer, name="ci")
    response = client.get(reverse("api-tasks"), headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    bad = client.get(reverse("api-tasks"), headers={"Authorization": "Bearer tt_wrong"})
    assert bad.status_code == 401


def test_api_token_of_user_without_permission_is_403(client, django_user_model, tasks):
    token = api_token_create(user=django_user_model.objects.create_user("x"), name="t")
    response = client.get(reverse("api-tasks"), headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403


def test_api_filters_and_next_link(viewer_client, tasks):
    first = viewer_client.get(
        reverse("api-tasks"), {"limit": "2", "state": "SUCCESS,PENDING"}
    ).json()
    assert len(first["results"]) == 2
    assert first["next"] and "state=SUCCESS" in first["next"]
    second = viewer_client.get(first["next"]).json()
    ids = [t["task_id"] for t in first["results"] + second["results"]]
    assert len(ids) == len(set(ids)) == 3  # ok, parent (SUCCESS) and child (PENDING)


@pytest.mark.parametrize(
    "query",
    [{"state": "nope"}, {"limit": "0"}, {"limit": "abc"}, {"cursor": "zzz"}, {"since": "x"}],
)
def test_api_bad_parameters_are_json_400(viewer_client, query):
    response = viewer_client.get(reverse("api-tasks"), query)
    assert response.status_code == 400
    assert "error" in response.json()


def test_api_task_detail_with_attempts_redacted_and_raw_text(viewer_client, tasks):
    bad = tasks["bad"]
    data = viewer_client.get(reverse("api-task", args=[bad.task_id])).json()
    assert data["state"] == "FAILURE"
    assert data["error"]["message"] == HOSTILE  # JSON carries text; it is not HTML
    assert [a["outcome"] for a in data["attempts"]] == ["FAILURE"]
    assert "hunter2" not in data["kwargs"] and "tok_secret_1" not in data["args"]


def test_api_task_detail_404(viewer_client):
    response = viewer_client.get(reverse("api-task", args=["missing"]))
    assert response.status_code == 404 and response.json()["error"]


def test_api_responses_are_json_content_type(viewer_client, tasks):
    response = viewer_client.get(reverse("api-tasks"))
    assert response["Content-Type"] == "application/json"


def test_api_task_detail_result_is_the_stored_status_without_the_value(viewer_client, tasks):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django_celery_results.models import TaskResult

    ok = tasks["ok"]
    url = reverse("api-task", args=[ok.task_id])
    assert viewer_client.get(url).json()["result"] is None
    TaskResult.objects.create(
        task_id=ok.task_id, status="SUCCESS", result='{"secret-ish": "big value"}',
        content_type="application/json", content_encoding="utf-8",
    )  # fmt: skip
    with CaptureQueriesContext(connection) as queries:
        data = viewer_client.get(url).json()
    assert data["result"]["status"] == "SUCCESS"
    stored = TaskResult.objects.get().date_done
    assert dt.datetime.fromisoformat(data["result"]["date_done"]) == stored
    reads = [q["sql"] for q in queries if "django_celery_results_taskresult" in q["sql"]]
    assert len(reads) == 1 and '"result"' not in reads[0].split("FROM")[0]

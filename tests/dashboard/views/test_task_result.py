"""The task page's result section: the page points htmx at a small partial, which reads the result
backend (a real Redis db of its own) and answers with the result or a clear message, never a 500."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import pytest
from django.urls import reverse

from dashboard.ingest.writer import write_events
from dashboard.selectors.results import NOT_CONFIGURED, PICKLE_REFUSED
from tests.conftest import event, new_task_id, story_success
from tests.dashboard.selectors.test_results import result_redis, results_url, shop_app  # noqa: F401
from tests.security.conftest import MARK, injection_problems

pytestmark = pytest.mark.django_db


def finished_task() -> str:
    task_id = new_task_id()
    write_events(story_success(task_id))
    return task_id


def test_the_task_page_loads_the_result_after_rendering(viewer_client, result_redis):  # noqa: F811
    task_id = finished_task()
    shop_app().backend.store_result(task_id, {"total": "12.50"}, "SUCCESS")
    page = viewer_client.get(reverse("task-detail", args=[task_id])).content.decode()
    url = reverse("task-result", args=[task_id])
    assert f'hx-get="{url}" hx-trigger="load"' in page
    assert "12.50" not in page  # the page itself never reads the backend


def test_a_running_task_does_not_ask_for_its_result(viewer_client):
    task_id = new_task_id()
    write_events([event("published", task_id, time.time(), name="shop.x", queue="default")])
    page = viewer_client.get(reverse("task-detail", args=[task_id])).content.decode()
    assert reverse("task-result", args=[task_id]) not in page
    assert "read once the task has finished" in page


def test_the_partial_shows_the_result_redacted(viewer_client, result_redis):  # noqa: F811
    task_id = finished_task()
    value = {"total": "12.50", "secret_answer": "blue"}
    shop_app().backend.store_result(task_id, value, "SUCCESS")
    response = viewer_client.get(
        reverse("task-result", args=[task_id]), headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert "12.50" in body and "blue" not in body
    assert results_url() in body  # where it was read


def test_a_pickled_result_is_refused_with_the_message(viewer_client, result_redis):  # noqa: F811
    task_id = finished_task()
    shop_app("pickle").backend.store_result(task_id, {"total": 1}, "SUCCESS")
    body = viewer_client.get(reverse("task-result", args=[task_id])).content.decode()
    assert "pickle serializer, which tasktrail does not read" in body
    assert PICKLE_REFUSED.startswith("The result is stored with the pickle serializer")


def test_an_unreachable_backend_is_a_message_not_a_500(viewer_client, settings):
    settings.TASKTRAIL_RESULT_BACKEND = "redis://:s3cret-pw@127.0.0.1:1/0"
    response = viewer_client.get(reverse("task-result", args=[finished_task()]))
    assert response.status_code == 200
    body = response.content.decode()
    assert "result backend unreachable: " in body
    assert "s3cret-pw" not in body


def test_django_celery_results_when_no_backend_is_set(viewer_client, settings):
    settings.TASKTRAIL_RESULT_BACKEND = ""
    task_id = finished_task()
    app = shop_app()
    app.conf.result_backend = "django-db"
    app.backend.store_result(task_id, {"mailed": 2}, "SUCCESS")
    body = viewer_client.get(reverse("task-result", args=[task_id])).content.decode()
    assert "&quot;mailed&quot;: 2" in body and "django-celery-results" in body


def test_the_not_configured_sentence(viewer_client, settings):
    settings.TASKTRAIL_RESULT_BACKEND = ""
    task_id = finished_task()
    settings.INSTALLED_APPS = [a for a in settings.INSTALLED_APPS if a != "django_celery_results"]
    body = viewer_client.get(reverse("task-result", args=[task_id])).content.decode()
    assert NOT_CONFIGURED.split(":")[0] in body and "TASKTRAIL_RESULT_BACKEND" in body


def test_only_viewers_see_the_result(client, django_user_model, result_redis):  # noqa: F811
    url = reverse("task-result", args=[finished_task()])
    assert client.get(url)["Location"].startswith(reverse("login"))
    client.force_login(django_user_model.objects.create_user("nobody"))
    assert client.get(url).status_code == 403


@pytest.mark.parametrize(
    "value", ["%00", "a" * 300, "%ff%fe", quote("' OR '1'='1"), "..%2F..%2Fetc%2Fpasswd", "x"]
)
def test_a_bad_or_unknown_task_id_is_a_404(viewer_client, result_redis, value):  # noqa: F811
    prefix = reverse("task-result", args=["x"]).removesuffix("x/result")
    response = viewer_client.get(f"{prefix}{value}/result")
    assert response.status_code == 404


@pytest.mark.parametrize(
    "task_id",
    [
        f"<script>window.{MARK}=1</script>",
        f'"\'><img src=x onerror="window.{MARK}=1">',
        "a/b/result",  # a task id may hold "/", even ending as the URL does
        "line\nbreak\u202e",
    ],
)
def test_hostile_task_ids_and_results_are_shown_inert(
    viewer_client,
    result_redis,  # noqa: F811
    task_id: str,
):
    write_events(story_success(task_id))
    hostile: dict[str, Any] = {"html": f"<script>window.{MARK}=1</script>"}
    shop_app().backend.store_result(task_id, hostile, f"<b>{MARK}</b>")
    response = viewer_client.get(reverse("task-result", args=[task_id]))
    assert response.status_code == 200
    body = response.content.decode()
    assert injection_problems(body, full_page=False) == []
    assert MARK in body  # shown, as text

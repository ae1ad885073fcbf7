"""A page that is not there still leads somewhere: navigation, search, what was asked for."""

from __future__ import annotations

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_an_unknown_task_id_answers_a_page_with_navigation_and_search(viewer_client):
    response = viewer_client.get(reverse("task-detail", args=["3f0c1a2b-no-such-task"]))
    assert response.status_code == 404
    body = response.content.decode()
    assert "No task with the id" in body and "3f0c1a2b-no-such-task" in body
    assert 'aria-label="Main"' in body  # the site's navigation
    assert 'action="/tasks/"' in body and 'name="q"' in body


def test_an_unknown_page_names_the_path(viewer_client):
    response = viewer_client.get("/no-such-page/")
    assert response.status_code == 404
    assert "There is no page at" in response.content.decode()
    assert "/no-such-page/" in response.content.decode()


def test_favicon_ico_is_served_at_the_root(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"] in {"image/x-icon", "image/vnd.microsoft.icon"}
    assert b"".join(response.streaming_content)[:4] == b"\x00\x00\x01\x00"  # an ICO header

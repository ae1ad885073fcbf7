"""Every parameter every view reads, fed malformed, oversized, SQL-looking, non-UTF-8, repeated and
wrong-type values: a clear 400 (HTML page or JSON error with the reason) or the value ignored,
never a 500."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from dashboard.alerts import rules
from dashboard.alerts.incidents import open_incident
from dashboard.models import OperatorAction
from tasktrail.events import make_event
from tests.security.conftest import client_for, ingest

pytestmark = pytest.mark.django_db

# name -> raw query-string value (already percent-encoded)
BAD_VALUES: dict[str, str] = {
    "sql": quote("' OR 1=1; DROP TABLE dashboard_taskrun; --"),
    "sql_union": quote("1 UNION SELECT password FROM auth_user"),
    "oversized_100k": "a" * 100_000,
    "nul": "%00",
    "nul_inside": "ab%00cd",
    "non_utf8": "%ff%fe%C3%28",
    "lone_surrogate_utf8": "%ED%A0%80",
    "control": quote("\r\n\x1b[2J\x07"),
    "unicode_digit": quote("²"),
    "huge_number": "9" * 40,
    "negative": "-1",
    "float": "1.5e3",
    "far_date": quote("0001-01-01T00:00+01:00"),
    "last_date": quote("9999-12-31T23:59:59-14:00"),
    "empty": "",
    "whitespace": "%20%20%20",
    "json_object": quote('{"$gt": ""}'),
    "percent": "%25",
}

# view name -> the query parameters it reads
GET_PARAMETERS: dict[str, list[str]] = {
    "tasks": ["state", "name", "queue", "worker", "since", "until", "window", "q", "cursor",
              "newer"],
    "task-stats": ["window", "name"],
    "bulk-confirm": ["action", "task_id", "state", "name", "q", "window", "since", "until"],
    "audit": ["kind", "user", "before"],
    "incidents": ["rule", "before"],
    "api-tasks": ["state", "name", "queue", "worker", "since", "until", "window", "q", "cursor",
                  "limit"],
}  # fmt: skip
JSON_VIEWS = {"api-tasks", "api-task"}
# views whose page always carries a base query (bulk-confirm needs an action and a filter)
BASE_QUERY = {"bulk-confirm": "action=retry&state=FAILURE"}
REPEATS = 500

GET_CASES = [
    (view, param, bad)
    for view, params in GET_PARAMETERS.items()
    for param in params
    for bad in BAD_VALUES
]


def assert_clear_answer(response: Any, view: str) -> None:
    """Served (the value ignored or cleaned), or refused with a 400 that says why."""
    assert response.status_code in (200, 204, 286, 302, 400), response.status_code
    if response.status_code != 400:
        return
    if view in JSON_VIEWS:
        assert response["Content-Type"] == "application/json"
        assert json.loads(response.content)["error"]
    else:
        assert response.templates[0].name == "dashboard/bad_request.html"
        assert response.context["message"]


@pytest.fixture
def admin_client(db: Any) -> Client:
    return client_for("admin", raise_request_exception=False)


@pytest.fixture
def failed_task(db: Any) -> str:
    ingest(
        [
            make_event("published", "bad-input-1", 1_750_000_000.0, name="shop.charge",
                       queue="default", args="[1]", kwargs="{}", published_at=1_750_000_000.0),
            make_event("failed", "bad-input-1", 1_750_000_001.0, exc_type="E", exc_message="x"),
        ]
    )  # fmt: skip
    return "bad-input-1"


def _url(view: str, query: str) -> str:
    base = BASE_QUERY.get(view)
    return f"{reverse(view)}?{base + '&' if base else ''}{query}"


@pytest.mark.parametrize(("view", "param", "bad"), GET_CASES)
def test_get_parameter_bad_value_is_never_a_500(admin_client, failed_task, view, param, bad):
    response = admin_client.get(_url(view, f"{param}={BAD_VALUES[bad]}"))
    assert_clear_answer(response, view)


@pytest.mark.parametrize(
    ("view", "param"), [(v, p) for v, ps in GET_PARAMETERS.items() for p in ps]
)
def test_get_parameter_repeated_is_never_a_500(admin_client, failed_task, view, param):
    query = "&".join(f"{param}={BAD_VALUES['sql']}" for _ in range(REPEATS))
    assert_clear_answer(admin_client.get(_url(view, query)), view)


@pytest.mark.parametrize("htmx", [False, True])
@pytest.mark.parametrize("param", GET_PARAMETERS["tasks"])
def test_task_list_partials_refuse_bad_values_with_400(admin_client, param, htmx):
    headers = {"HX-Request": "true"} if htmx else {}
    response = admin_client.get(_url("tasks", f"{param}={'%00' * 300}"), headers=headers)
    assert response.status_code == 400
    assert response.context["message"]


PATH_VALUES = ["%00", "a" * 300, "%ff%fe", quote("' OR '1'='1"), "..%2F..%2Fetc%2Fpasswd"]


@pytest.mark.parametrize("value", PATH_VALUES)
@pytest.mark.parametrize("view", ["task-detail", "api-task"])
def test_task_id_in_the_path_bad_value_is_404(admin_client, view, value):
    prefix = reverse(view, args=["x"]).removesuffix("/").removesuffix("x")
    suffix = "/" if view == "task-detail" else ""
    response = admin_client.get(f"{prefix}{value}{suffix}")
    assert response.status_code == 404
    if view in JSON_VIEWS:
        assert json.loads(response.content)["error"]


@pytest.mark.parametrize("value", PATH_VALUES)
def test_task_action_on_a_bad_task_id_changes_nothing(admin_client, value):
    url = reverse("task-action", args=["x", "retry"]).replace("/x/", f"/{value}/")
    response = admin_client.post(url, {"reason": "bad id"})
    assert response.status_code in (302, 400, 404)
    assert not OperatorAction.objects.filter(outcome="done").exists()


@pytest.mark.parametrize("kind", ["explode", "RETRY", "%00", "a" * 1000])
def test_task_action_unknown_kind_is_404(admin_client, failed_task, kind):
    url = reverse("task-action", args=[failed_task, "retry"]).removesuffix("retry") + kind
    assert admin_client.post(url, {"reason": "x"}).status_code == 404


POST_FIELDS: dict[str, list[str]] = {
    "task-action": ["reason", "confirm"],
    "bulk-action": ["action", "reason", "task_id", "expected_count", "state", "name", "since"],
}


def _post(client: Client, view: str, task_id: str, body: str) -> Any:
    url = (
        reverse("task-action", args=[task_id, "terminate"])
        if view == "task-action"
        else reverse("bulk-action")
    )
    return client.post(url, body, content_type="application/x-www-form-urlencoded")


FORM_FIELDS: dict[str, dict[str, str]] = {
    "incident-acknowledge": {"note": "on it", "silence": "4h"},
    "preferences": {"time_zone": "Europe/Paris"},
}


@pytest.fixture
def open_incident_id(db: Any) -> int:
    verdict = rules.Verdict(rules.QUEUE_STUCK, "emails", "stuck", words="342 waiting")
    incident = open_incident(verdict, timezone.now())
    assert incident is not None
    return incident.pk


@pytest.mark.parametrize("bad", list(BAD_VALUES))
@pytest.mark.parametrize(("view", "field"), [(v, f) for v, fs in FORM_FIELDS.items() for f in fs])
@pytest.mark.parametrize("htmx", [False, True])
def test_form_field_bad_value_is_never_a_500(
    admin_client, open_incident_id, view, field, bad, htmx
):
    """The incident acknowledgement and the preferences form, as a browser or htmx posts them."""
    url = (
        reverse(view, args=[open_incident_id]) if view == "incident-acknowledge" else reverse(view)
    )
    base = {k: v for k, v in FORM_FIELDS[view].items() if k != field}
    body = "&".join([f"{k}={quote(v)}" for k, v in base.items()] + [f"{field}={BAD_VALUES[bad]}"])
    headers = {"HX-Request": "true"} if htmx else {}
    response = admin_client.post(
        url, body, content_type="application/x-www-form-urlencoded", headers=headers
    )
    assert response.status_code in (200, 302, 400, 403, 422), response.status_code


@pytest.mark.parametrize("bad", list(BAD_VALUES))
@pytest.mark.parametrize(("view", "field"), [(v, f) for v, fs in POST_FIELDS.items() for f in fs])
def test_post_field_bad_value_is_never_a_500(
    admin_client, failed_task, redis_client, view, field, bad
):
    base = {"reason": "fix", "action": "retry", "task_id": failed_task, "confirm": "TERMINATE"}
    base.pop(field, None)
    body = "&".join([f"{k}={quote(v)}" for k, v in base.items()] + [f"{field}={BAD_VALUES[bad]}"])
    response = _post(admin_client, view, failed_task, body)
    assert response.status_code in (302, 400, 403), response.status_code
    if response.status_code == 400:
        assert response.context["message"]


def _cursor(raw: str) -> str:
    import base64

    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


BAD_CURSORS = {
    "huge_id": _cursor("2026-01-01T00:00:00+00:00|" + "9" * 40),
    "negative_id": _cursor("2026-01-01T00:00:00+00:00|-5"),
    "unicode_digit_id": _cursor("2026-01-01T00:00:00+00:00|²"),
    "far_date": _cursor("0001-01-01T00:00:00+01:00|1"),
    "naive_date": _cursor("2026-01-01T00:00:00|1"),
    "sql": _cursor("2026-01-01T00:00:00+00:00|1 OR 1=1"),
    "not_base64": "!!!!",
}


@pytest.mark.parametrize("param", ["cursor", "newer"])
@pytest.mark.parametrize("bad", list(BAD_CURSORS))
def test_forged_cursor_is_a_400(admin_client, param, bad):
    response = admin_client.get(reverse("tasks"), {param: BAD_CURSORS[bad]})
    assert response.status_code == 400
    assert "cursor" in response.context["message"]


@pytest.mark.parametrize("bad", list(BAD_CURSORS))
def test_forged_cursor_in_the_api_is_a_json_400(admin_client, bad):
    response = admin_client.get(reverse("api-tasks"), {"cursor": BAD_CURSORS[bad]})
    assert response.status_code == 400
    assert "cursor" in response.json()["error"]


@pytest.mark.parametrize("bad", list(BAD_VALUES))
@pytest.mark.parametrize("field", ["username", "password", "next"])
def test_login_field_bad_value_is_never_a_500(db, field, bad):
    base = {"username": "someone", "password": "wrong", "next": "/"}
    base.pop(field)
    body = "&".join([f"{k}={quote(v)}" for k, v in base.items()] + [f"{field}={BAD_VALUES[bad]}"])
    client = Client(raise_request_exception=False)
    response = client.post(reverse("login"), body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200  # the form again, with its error
    assert "didn't match" in response.content.decode() or response.context["form"].errors


AUTHORIZATION_VALUES = [
    "Bearer " + "a" * 100_000,
    "Bearer tt_\x01\x02",
    "Bearer ' OR 1=1 --",
    "Basic dXNlcjpwYXNz",
    "Bearer",
    "bearer  ",
    "Bearer tt_" + "é" * 10,
]


@pytest.mark.parametrize("header", AUTHORIZATION_VALUES)
@pytest.mark.parametrize("view", ["api-tasks", "metrics"])
def test_bad_authorization_header_is_401(db, settings, view, header):
    settings.TASKTRAIL_METRICS_TOKEN = "metrics-token"
    client = Client(raise_request_exception=False)
    response = client.get(reverse(view), headers={"Authorization": header})
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")

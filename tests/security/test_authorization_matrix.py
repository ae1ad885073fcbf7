"""Every URL the URL conf serves, for every role, GET and POST: the expected status.

The cases come from walking the URL conf: a new tasktrail URL without a row in EXPECTED fails
here, so an endpoint cannot be added without deciding who may use it. The Django admin keeps its
own rule (staff only): every admin URL, with real objects in its path, refuses every role.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from dashboard.alerts.incidents import open_incident
from dashboard.alerts.rules import QUEUE_STUCK, Verdict
from dashboard.models import AlertIncident, OperatorAction, TaskRun
from dashboard.pagination import Cursor
from dashboard.services import api_token_create
from tasktrail.events import make_event
from tests.catalog import register_demo_tasks
from tests.security.conftest import ingest, user_with_role

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _shop_catalog() -> None:
    """Retry decides from the shop's task catalog: the demo's tasks, as its worker reports them."""
    register_demo_tasks()


ROLES = ["anonymous", "nobody", "viewer", "operator", "admin", "token"]
LOGIN = "login"  # a redirect to the login page
METRICS_TOKEN = "matrix-metrics-token"


def _all(status: int | str) -> dict[str, int | str]:
    return dict.fromkeys(ROLES, status)


PAGE = {"anonymous": LOGIN, "nobody": 403, "viewer": 200, "operator": 200, "admin": 200,
        "token": LOGIN}  # fmt: skip  # pages take no bearer token: a session only
ACTION = {"anonymous": LOGIN, "nobody": 403, "viewer": 403, "operator": 302, "admin": 302,
          "token": LOGIN}  # fmt: skip
LIVE = {"anonymous": LOGIN, "nobody": 403, "viewer": 204, "operator": 204, "admin": 204,
        "token": LOGIN}  # fmt: skip  # the list's poll: 204 when nothing is new or changed
OWN = {"anonymous": LOGIN, "nobody": 200, "viewer": 200, "operator": 200, "admin": 200,
       "token": LOGIN}  # fmt: skip  # a person's own preferences: any login
SAVED = {"anonymous": LOGIN, "nobody": 302, "viewer": 302, "operator": 302, "admin": 302,
         "token": LOGIN}  # fmt: skip
ADMIN = {"anonymous": LOGIN, "nobody": 403, "viewer": 403, "operator": 403, "admin": 200,
         "token": LOGIN}  # fmt: skip  # pages about the whole installation (retention)
ADMIN_ACTION = {"anonymous": LOGIN, "nobody": 403, "viewer": 403, "operator": 403, "admin": 302,
                "token": LOGIN}  # fmt: skip  # clearing a task's identity conflict
API = {"anonymous": 401, "nobody": 403, "viewer": 200, "operator": 200, "admin": 200,
       "token": 200}  # fmt: skip

# url name -> method -> role -> expected status (or LOGIN)
EXPECTED: dict[str, dict[str, dict[str, int | str]]] = {
    "overview": {"GET": PAGE, "POST": _all(405)},
    "tasks": {"GET": PAGE, "POST": _all(405)},
    "task-stats": {"GET": PAGE, "POST": _all(405)},
    "task-detail": {"GET": PAGE, "POST": _all(405)},
    "task-result": {"GET": PAGE, "POST": _all(405)},  # the task page's result section
    "task-live-rows": {"GET": LIVE, "POST": _all(405)},
    "preferences": {"GET": OWN, "POST": SAVED},
    "queues": {"GET": PAGE, "POST": _all(405)},
    "queue-confirm": {"GET": PAGE, "POST": _all(405)},  # shows whether the role may act
    "queue-action": {"GET": _all(405), "POST": ACTION},  # pause: operators and admins
    "workers": {"GET": PAGE, "POST": _all(405)},
    "incidents": {"GET": PAGE, "POST": _all(405)},
    "audit": {"GET": PAGE, "POST": _all(405)},
    "bulk-confirm": {"GET": PAGE, "POST": _all(405)},
    "task-action": {"GET": _all(405), "POST": ACTION},
    "task-conflict-clear": {"GET": _all(405), "POST": ADMIN_ACTION},
    "bulk-action": {"GET": _all(405), "POST": ACTION},
    "incident-acknowledge": {"GET": _all(405), "POST": ACTION},
    "audit-action": {"GET": PAGE, "POST": _all(405)},
    "retention": {"GET": ADMIN, "POST": _all(405)},
    "tasks-export": {"GET": PAGE, "POST": _all(405)},
    "api-tasks": {"GET": API, "POST": _all(405)},
    "api-task": {"GET": API, "POST": _all(405)},
    "metrics": {"GET": _all(401), "POST": _all(405)},  # its own bearer token, not a session
    "login": {"GET": _all(200), "POST": _all(200)},  # a wrong password: the form again
    "logout": {"GET": _all(405), "POST": _all(302)},
}
# query strings a page needs to do its work
QUERY = {
    "bulk-confirm": "action=retry&state=FAILURE",
    "queue-confirm": "action=purge&queue=matrix-queue",
    "task-live-rows": "newer=" + Cursor(dt.datetime(2025, 1, 1, tzinfo=dt.UTC), 1).encode(),
}


def walk(patterns: list[Any], prefix: str = "", namespace: str = "") -> Iterator[tuple[str, str]]:
    """(name, route) of every pattern; unnamed ones are "<namespace>:?<route>"."""
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            inner = pattern.namespace or namespace
            yield from walk(pattern.url_patterns, prefix + str(pattern.pattern), inner)
        elif isinstance(pattern, URLPattern):
            route = prefix + str(pattern.pattern)
            name = pattern.name or f"?{route}"
            yield (f"{namespace}:{name}" if namespace else name), route


URLS = list(walk(get_resolver().url_patterns))
TASKTRAIL_URLS = [name for name, _ in URLS if not name.startswith("admin:")]
ADMIN_URLS = [(name, route) for name, route in URLS if name.startswith("admin:")]


def test_every_tasktrail_url_has_a_row_in_expected():
    assert sorted(set(TASKTRAIL_URLS) - set(EXPECTED)) == []


def test_expected_names_only_urls_that_exist():
    assert sorted(set(EXPECTED) - set(TASKTRAIL_URLS)) == []


def failed_task() -> str:
    task_id = f"matrix-{len(TaskRun.objects.all())}-{id(object())}"
    ingest(
        [
            make_event("published", task_id, 1_750_000_000.0, name="workers.tasks.send_invoice",
                       queue="default", args="[1]", kwargs="{}", published_at=1_750_000_000.0),
            make_event("failed", task_id, 1_750_000_001.0, exc_type="ValueError", exc_message="x"),
        ]
    )  # fmt: skip
    return task_id


def open_incident_id() -> int:
    subject = f"matrix-{AlertIncident.objects.count()}"
    verdict = Verdict(QUEUE_STUCK, subject, "stuck", words="1 waiting")
    incident = open_incident(verdict, timezone.now())
    assert incident is not None
    return incident.pk


def audited_action_id() -> int:
    action = OperatorAction.objects.create(
        username="matrix", kind="retry", bulk=True, scope="matrix", reason="matrix", outcome="done"
    )
    return action.pk


def client_for(role: str) -> Client:
    if role == "token":
        key = api_token_create(user=user_with_role("viewer"), name="matrix")
        return Client(headers={"Authorization": f"Bearer {key}"})
    client = Client()
    if role == "nobody":
        client.force_login(User.objects.create_user(f"nobody-{id(client)}"))
    elif role != "anonymous":
        client.force_login(user_with_role(role))
    return client


def url_for(name: str) -> str:
    kwargs: dict[str, str] = {}
    if name in ("task-detail", "task-result", "api-task", "task-action", "task-conflict-clear"):
        kwargs["task_id"] = failed_task()
    if name == "task-action":
        kwargs["kind"] = "retry"
    if name == "incident-acknowledge":
        kwargs["incident_id"] = str(open_incident_id())
    if name == "audit-action":
        kwargs["action_id"] = str(audited_action_id())
    url = reverse(name, kwargs=kwargs)
    return f"{url}?{QUERY[name]}" if name in QUERY else url


def form_for(name: str, role: str) -> dict[str, Any]:
    if name == "bulk-action":
        return {"action": "retry", "reason": "matrix", "task_id": failed_task(),
                "expected_count": "1"}  # fmt: skip
    if name == "login":
        return {"username": f"matrix-{role}", "password": "wrong"}
    if name == "incident-acknowledge":
        return {"note": "matrix", "silence": "1h"}
    if name == "queue-action":
        return {"action": "pause", "queue": f"matrix-{role}", "reason": "matrix"}
    return {"reason": "matrix"}


CASES = [(name, method, role) for name in TASKTRAIL_URLS for method in ("GET", "POST")
         for role in ROLES]  # fmt: skip


@pytest.mark.parametrize(("name", "method", "role"), CASES)
def test_authorization_matrix(redis_client, settings, name, method, role):
    settings.TASKTRAIL_METRICS_TOKEN = METRICS_TOKEN
    expected = EXPECTED[name][method][role]
    client = client_for(role)
    url = url_for(name)
    post = method == "POST"
    response = client.post(url, form_for(name, role)) if post else client.get(url)
    if expected == LOGIN:
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
    else:
        assert response.status_code == expected


@pytest.mark.parametrize("role", ROLES)
def test_refused_actions_are_audited_and_change_nothing(
    redis_client, django_capture_on_commit_callbacks, role
):
    task_id = failed_task()
    client = client_for(role)
    with django_capture_on_commit_callbacks(execute=True):  # the Celery call runs after commit
        response = client.post(reverse("task-action", args=[task_id, "retry"]), {"reason": "x"})
    allowed = EXPECTED["task-action"]["POST"][role] == 302 and role in ("operator", "admin")
    assert (TaskRun.objects.get(task_id=task_id).retried_as is not None) == allowed
    assert redis_client.llen("default") == (1 if allowed else 0)
    if response.status_code == 403:
        assert OperatorAction.objects.get().outcome == "refused"


def admin_url(route: str) -> str:
    """An admin route with real objects in its path."""
    user = User.objects.create_user(f"matrix-target-{id(route)}-{len(User.objects.all())}")
    values = {
        "object_id": str(user.pk),
        "id": str(user.pk),
        "content_type_id": str(ContentType.objects.get_for_model(User).pk),
        "app_label": "dashboard",
        "url": "nothing-here/",
    }
    path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values[m.group(1)], route)
    path = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: values[m.group(1)], path)
    return "/" + path.replace("^", "").replace("$", "")


ADMIN_OPEN = {"admin:login"}  # the admin's own login form
ADMIN_LOGOUT = "admin:logout"  # POST only; it logs out whoever asks


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("name", "route"), ADMIN_URLS, ids=[n for n, _ in ADMIN_URLS])
def test_admin_urls_refuse_every_role_without_staff(name, route, role):
    client = client_for(role)
    url = admin_url(route)
    if name == ADMIN_LOGOUT:
        logged_in = "_auth_user_id" in client.session
        assert client.get(url).status_code in (302, 405)
        assert ("_auth_user_id" in client.session) == logged_in  # a GET logs nobody out
        assert client.post(url).status_code in (200, 302)
        return
    for response in (client.get(url), client.post(url, {})):
        if name in ADMIN_OPEN:
            assert response.status_code == 200
            continue
        assert response.status_code in (302, 404, 405), (url, response.status_code)
        if response.status_code == 302:
            assert response["Location"].startswith(reverse("admin:login"))

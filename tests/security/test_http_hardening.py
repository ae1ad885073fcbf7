"""CSRF on every POST, no state change on GET, the login redirect, security headers, session
fixation, and `manage.py check --deploy` with production settings."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from dashboard.models import OperatorAction, TaskAttempt, TaskRun
from tests.security.conftest import client_for, record_hostile, user_with_role
from tests.security.test_authorization_matrix import EXPECTED, TASKTRAIL_URLS, url_for

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "pw-hardening-4711"
POST_URLS = [name for name in TASKTRAIL_URLS if set(EXPECTED[name]["POST"].values()) != {405}]


def csrf_client(role: str) -> Client:
    client = Client(enforce_csrf_checks=True)
    if role != "anonymous":
        client.force_login(user_with_role(role))
    return client


def snapshot() -> tuple[list[Any], list[Any], int]:
    return (
        list(TaskRun.objects.order_by("pk").values()),
        list(TaskAttempt.objects.order_by("pk").values()),
        OperatorAction.objects.count(),
    )


def test_post_urls_are_the_actions_the_login_and_preferences(redis_client):
    """Asked of the views themselves (every URL of the URL conf, posted to as an admin without
    CSRF checks): only these accept a POST, so the CSRF tests below cover every state change."""
    client = Client()
    client.force_login(user_with_role("admin"))
    accepting = sorted(
        name for name in TASKTRAIL_URLS if client.post(url_for(name)).status_code != 405
    )
    assert accepting == [
        "bulk-action",
        "incident-acknowledge",
        "login",
        "logout",
        "preferences",
        "queue-action",
        "task-action",
        "task-conflict-clear",
    ]
    assert sorted(POST_URLS) == accepting  # the table the CSRF tests use agrees


@pytest.mark.parametrize("name", POST_URLS)
def test_post_without_csrf_token_is_refused(redis_client, name):
    client = csrf_client("admin")
    url = url_for(name)
    before = snapshot()
    form = {"action": "retry", "reason": "csrf", "task_id": "x", "username": "a", "password": "b"}
    response = client.post(url, form)
    assert response.status_code == 403
    assert snapshot() == before and redis_client.llen("default") == 0
    assert "_auth_user_id" in client.session  # logout without a token did not log out


def test_post_with_the_token_from_the_page_works(redis_client):
    """The token htmx sends (hx-headers on <body>) is accepted: CSRF is on, not broken."""
    row = record_hostile("script")
    client = csrf_client("operator")
    page = client.get(reverse("task-detail", args=[row.task_id])).content.decode()
    token = re.search(r'hx-headers=\'\{"x-csrftoken": "([^"]+)"\}\'', page)
    assert token is not None
    response = client.post(
        reverse("task-action", args=[row.task_id, "retry"]),
        {"reason": "with token"},
        headers={"X-CSRFToken": token.group(1), "HX-Request": "true"},
    )
    assert response.status_code == 200
    assert OperatorAction.objects.get().reason == "with token"


@pytest.mark.parametrize("name", TASKTRAIL_URLS)
def test_get_changes_nothing(redis_client, settings, name):
    settings.TASKTRAIL_METRICS_TOKEN = "t"
    url = url_for(name)
    client = client_for("admin")
    before = snapshot()
    client.get(url, headers={"Authorization": "Bearer t"})
    client.get(url, headers={"HX-Request": "true"})
    assert snapshot() == before
    assert redis_client.llen("default") == 0
    assert "_auth_user_id" in client.session  # GET on logout logs nobody out


OFF_SITE = [
    "https://evil.example/",
    "//evil.example/",
    "/\\evil.example/",
    "\\\\evil.example",
    "https:evil.example",
    "http://testserver@evil.example/",
    "javascript:alert(1)",
    " //evil.example",
]


@pytest.fixture
def person(db: Any) -> User:
    return User.objects.create_user("hardening-person", password=PASSWORD)


@pytest.mark.parametrize("target", OFF_SITE)
def test_login_next_never_leaves_the_site(person, target):
    response = Client().post(
        reverse("login"), {"username": person.username, "password": PASSWORD, "next": target}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse(settings.LOGIN_REDIRECT_URL)


@pytest.mark.parametrize("target", OFF_SITE)
def test_login_page_does_not_carry_an_off_site_next(target):
    body = Client().get(reverse("login"), {"next": target}).content.decode()
    assert 'name="next" value=""' in body


def test_login_next_on_site_is_followed(person):
    response = Client().post(
        reverse("login"), {"username": person.username, "password": PASSWORD, "next": "/queues/"}
    )
    assert response["Location"] == "/queues/"


def test_session_key_changes_on_login(person):
    client = Client()
    session = client.session
    session["before-login"] = True
    session.save()
    client.cookies[settings.SESSION_COOKIE_NAME] = session.session_key
    before = session.session_key
    client.post(reverse("login"), {"username": person.username, "password": PASSWORD})
    after = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert after and after != before
    assert "_auth_user_id" in client.session


def test_logout_ends_the_session(person):
    client = Client()
    client.post(reverse("login"), {"username": person.username, "password": PASSWORD})
    key = client.session.session_key
    client.post(reverse("logout"))
    assert "_auth_user_id" not in client.session and client.session.session_key != key


HEADER_URLS = ["overview", "tasks", "api-tasks", "login", "task-detail"]


@pytest.mark.parametrize("role", ["anonymous", "viewer"])
@pytest.mark.parametrize("name", HEADER_URLS)
def test_security_headers_on_every_answer(name, role):
    response = client_for(role).get(url_for(name))
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    policy = response["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "object-src 'none'" in policy
    script_src = next(p for p in policy.split("; ") if p.startswith("script-src"))
    assert "'unsafe-inline'" not in script_src and "*" not in script_src
    assert "'unsafe-eval'" not in script_src


def test_security_headers_on_a_404():
    response = client_for("viewer").get("/no-such-page/")
    assert response.status_code == 404
    assert response["X-Frame-Options"] == "DENY" and "Content-Security-Policy" in response


def test_templates_have_no_inline_script():
    """The policy allows scripts from files only: an inline script in a template would not run."""
    for path in (ROOT / "templates").rglob("*.html"):
        text = path.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), path
        assert not re.search(r"\son[a-z]+=", text), path


def test_templates_ask_htmx_for_no_eval():
    """Without 'unsafe-eval' a trigger filter ([…]) or hx-on would fail in the browser: none is
    used, and htmx is configured not to eval."""
    for path in (ROOT / "templates").rglob("*.html"):
        text = path.read_text()
        assert not re.search(r'hx-trigger="[^"]*\[', text), path
        assert not re.search(r"hx-on[:-]", text), path
    assert '"allowEval": false' in (ROOT / "templates" / "base.html").read_text()


def production_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKTRAIL_", "DJANGO_"))}
    env.update(
        DEBUG="false",
        TASKTRAIL_HTTPS="true",
        SECRET_KEY=secrets.token_urlsafe(60),
        ALLOWED_HOSTS="tasktrail.example.com",
        TASKTRAIL_VAR_DIR=str(tmp_path),
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        REDIS_URL="redis://127.0.0.1:1/0",  # never contacted by a check; no embedded server
        DJANGO_SETTINGS_MODULE="dashboard.settings",
    )
    return env


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=production_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_warns_without_the_https_switch(tmp_path):
    env = production_env(tmp_path) | {"TASKTRAIL_HTTPS": "false"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "security.W012" in result.stderr  # SESSION_COOKIE_SECURE


def test_production_settings_make_cookies_secure(tmp_path):
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "print(json.dumps([s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT, "
        "s.SECURE_HSTS_SECONDS, s.SESSION_COOKIE_HTTPONLY, s.DEBUG]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=production_env(tmp_path),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert json.loads(result.stdout) == [True, True, True, 31_536_000, True, False]

"""API tokens expire and can be revoked (admin page and `manage.py apitoken`); every refused token
is logged with the client address and never the token, and throttled as failed logins are."""

from __future__ import annotations

import datetime as dt
import io
import logging
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from dashboard.models import ApiToken
from dashboard.services import api_token_create
from tests.security.conftest import user_with_role

pytestmark = pytest.mark.django_db

HERE, ELSEWHERE = "192.0.2.44", "198.51.100.45"


def api(key: str, ip: str = HERE) -> Any:
    client = Client(REMOTE_ADDR=ip, headers={"Authorization": f"Bearer {key}"})
    return client.get(reverse("api-tasks"))


def command(*args: str) -> str:
    out = io.StringIO()
    call_command("apitoken", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def viewer() -> User:
    return user_with_role("viewer", "token-viewer")


def test_a_new_token_expires_after_the_default_days(viewer):
    key = api_token_create(user=viewer, name="ci")
    token = ApiToken.objects.get()
    left = token.expires_at - timezone.now()
    assert dt.timedelta(days=settings.TASKTRAIL_API_TOKEN_DAYS - 1) < left
    assert left <= dt.timedelta(days=settings.TASKTRAIL_API_TOKEN_DAYS)
    assert api(key).status_code == 200


def test_an_expired_token_is_refused(viewer):
    key = api_token_create(user=viewer, name="old")
    ApiToken.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    answer = api(key)
    assert answer.status_code == 401
    assert answer.json()["error"]


def test_a_revoked_token_is_refused_and_a_refusal_is_logged_without_the_token(viewer, caplog):
    key = api_token_create(user=viewer, name="leaked")
    assert api(key).status_code == 200
    out = command("revoke", str(ApiToken.objects.get().pk))
    assert "Revoked 1 token" in out
    caplog.set_level(logging.WARNING, logger="tasktrail.security")
    assert api(key).status_code == 401
    refused = [r.getMessage() for r in caplog.records if r.name == "tasktrail.security"]
    assert refused and "revoked token" in refused[0] and HERE in refused[0]
    assert key not in caplog.text and key[3:20] not in caplog.text


def test_create_list_and_revoke_from_the_command(viewer):
    key = command("create", viewer.username, "--name", "deploy", "--expires-days", "7").strip()
    assert key.startswith(ApiToken.PREFIX)
    token = ApiToken.objects.get()
    assert token.expires_at - timezone.now() <= dt.timedelta(days=7)
    listing = command("list")
    assert "deploy" in listing and "active" in listing and viewer.username in listing
    assert key not in listing
    command("revoke", "--user", viewer.username)
    assert "revoked" in command("list", "--user", viewer.username)
    assert api(key).status_code == 401


@pytest.mark.parametrize("days", ["0", "-3", "99999"])
def test_the_command_refuses_a_life_out_of_bounds(viewer, days):
    with pytest.raises(CommandError, match="expires after 1 to"):
        command("create", viewer.username, "--expires-days", days)


def test_the_older_command_takes_an_expiry_too(viewer):
    out = io.StringIO()
    call_command("create_api_token", viewer.username, "--expires-days", "3", stdout=out)
    assert ApiToken.objects.get().expires_at - timezone.now() <= dt.timedelta(days=3)


def test_revoking_an_unknown_id_says_so():
    with pytest.raises(CommandError, match="No API token with id 999"):
        command("revoke", "999")


def test_the_admin_lists_tokens_and_revokes_them(viewer):
    key = api_token_create(user=viewer, name="from-admin")
    admin = Client()
    admin.force_login(User.objects.create_superuser("token-admin"))
    listing = admin.get(reverse("admin:dashboard_apitoken_changelist"))
    assert listing.status_code == 200
    assert "from-admin" in listing.content.decode() and key not in listing.content.decode()
    answer = admin.post(
        reverse("admin:dashboard_apitoken_changelist"),
        {"action": "revoke", "_selected_action": [ApiToken.objects.get().pk]},
    )
    assert answer.status_code == 302
    assert ApiToken.objects.get().revoked_at is not None
    assert api(key).status_code == 401


def test_guessing_tokens_is_throttled_per_address(viewer):
    key = api_token_create(user=viewer, name="real")
    statuses = [api(f"tt_guess-{i}").status_code for i in range(settings.AXES_FAILURE_LIMIT)]
    assert statuses == [401] * settings.AXES_FAILURE_LIMIT
    refused = api(key)  # the right token, from the throttled address
    assert refused.status_code == 429
    assert "Too many failed attempts" in refused.json()["error"]
    assert int(refused["Retry-After"]) > 0
    assert api(key, ip=ELSEWHERE).status_code == 200


def test_a_session_needs_no_token_and_is_not_counted(viewer):
    client = Client(REMOTE_ADDR=HERE)
    client.force_login(viewer)
    for _ in range(settings.AXES_FAILURE_LIMIT + 1):
        assert client.get(reverse("api-tasks")).status_code == 200

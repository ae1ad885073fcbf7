"""Login lockout (django-axes): per username and client address, with a clear page, reset by a
success or by `manage.py axes_reset_username`."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db

PASSWORD = "pw-lockout-2931"
HERE, ELSEWHERE = "192.0.2.10", "198.51.100.20"


@pytest.fixture(autouse=True)
def _fast_hashes(settings: Any) -> None:
    """Many logins per test: a cheap hasher (the lockout does not depend on it)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def person(db: Any) -> User:
    return User.objects.create_user("lockout-person", password=PASSWORD)


def log_in(username: str, password: str, ip: str = HERE) -> Any:
    return Client(REMOTE_ADDR=ip).post(
        reverse("login"), {"username": username, "password": password}
    )


def fail(username: str, times: int, ip: str = HERE) -> list[int]:
    return [log_in(username, "wrong", ip).status_code for _ in range(times)]


def test_failures_below_the_limit_show_the_form_again(person):
    assert fail(person.username, settings.AXES_FAILURE_LIMIT - 1) == [200] * (
        settings.AXES_FAILURE_LIMIT - 1
    )
    assert log_in(person.username, PASSWORD).status_code == 302


def test_the_limit_locks_the_username_from_that_address(person):
    statuses = fail(person.username, settings.AXES_FAILURE_LIMIT)
    assert statuses[-1] == 429
    locked = log_in(person.username, PASSWORD)  # the right password, too late
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.content.decode()
    assert "_auth_user_id" not in locked.client.session


def test_the_lockout_page_says_how_long(person):
    fail(person.username, settings.AXES_FAILURE_LIMIT)
    body = log_in(person.username, PASSWORD).content.decode()
    assert f"After {settings.AXES_FAILURE_LIMIT} failed logins" in body
    assert "0:15:00" in body and "ask an administrator" in body


def test_the_same_user_from_another_address_can_still_log_in(person):
    fail(person.username, settings.AXES_FAILURE_LIMIT)
    assert log_in(person.username, PASSWORD, ip=ELSEWHERE).status_code == 302


def test_another_user_from_the_same_address_can_still_log_in(person):
    other = User.objects.create_user("lockout-other", password=PASSWORD)
    fail(person.username, settings.AXES_FAILURE_LIMIT)
    assert log_in(other.username, PASSWORD).status_code == 302


def test_a_success_resets_the_count(person):
    fail(person.username, settings.AXES_FAILURE_LIMIT - 1)
    assert log_in(person.username, PASSWORD).status_code == 302
    assert fail(person.username, settings.AXES_FAILURE_LIMIT - 1)[-1] == 200
    assert log_in(person.username, PASSWORD).status_code == 302


def test_the_management_command_unlocks(person):
    fail(person.username, settings.AXES_FAILURE_LIMIT)
    assert log_in(person.username, PASSWORD).status_code == 429
    call_command("axes_reset_username", person.username)
    assert log_in(person.username, PASSWORD).status_code == 302


def test_the_lockout_page_escapes_the_username():
    username = '"><script>window.__pwned=1</script>'
    fail(username, settings.AXES_FAILURE_LIMIT)
    body = log_in(username, "x").content.decode()
    assert "<script>window" not in body and "&lt;script&gt;" in body


def test_authenticate_without_a_request_is_not_throttled(person):
    """A shell or a management command has no client address: only the password counts."""
    assert authenticate(username=person.username, password=PASSWORD) == person

"""Password spraying: failed logins from one address across many usernames lock that address
out (the locked-out page, 429), counted in django-axes' own rows, which stay bounded."""

from __future__ import annotations

from typing import Any

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db

PASSWORD = "pw-spray-5521"
SPRAYER, ELSEWHERE = "192.0.2.77", "198.51.100.78"
LIMIT = 6


@pytest.fixture(autouse=True)
def _small_limit(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.TASKTRAIL_LOGIN_ADDRESS_FAILURES = LIMIT


def log_in(username: str, password: str, ip: str = SPRAYER) -> Any:
    return Client(REMOTE_ADDR=ip).post(
        reverse("login"), {"username": username, "password": password}
    )


def spray(count: int, start: int = 0) -> list[int]:
    """One wrong password per username: never enough to lock any one username."""
    return [log_in(f"user-{i}", "Winter2026!").status_code for i in range(start, start + count)]


def test_one_guess_per_username_locks_the_address_at_the_limit():
    person = User.objects.create_user("real-person", password=PASSWORD)
    assert spray(LIMIT) == [200] * LIMIT
    locked = log_in(person.username, PASSWORD)  # the right password, from the spraying address
    assert locked.status_code == 429
    body = locked.content.decode()
    assert "from this address, for any username" in body
    assert "_auth_user_id" not in locked.client.session
    assert log_in(person.username, PASSWORD, ip=ELSEWHERE).status_code == 302


def test_refused_attempts_add_no_rows():
    spray(LIMIT)
    rows = AccessAttempt.objects.count()
    assert spray(50, start=LIMIT) == [429] * 50
    assert AccessAttempt.objects.count() == rows  # a locked-out address cannot grow the table


def test_resetting_the_address_unlocks_it():
    person = User.objects.create_user("real-person-2", password=PASSWORD)
    spray(LIMIT)
    call_command("axes_reset_ip", SPRAYER)
    assert log_in(person.username, PASSWORD).status_code == 302


def test_zero_turns_the_address_limit_off(settings):
    settings.TASKTRAIL_LOGIN_ADDRESS_FAILURES = 0
    assert spray(LIMIT + 2) == [200] * (LIMIT + 2)

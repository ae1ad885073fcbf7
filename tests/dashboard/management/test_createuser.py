"""``createuser NAME --role ROLE``: the role groups of dashboard.roles, idempotent, clear errors."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command

from dashboard.roles import ROLES

pytestmark = pytest.mark.django_db
PASSWORD = "correct-Horse-battery-7"


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("createuser", *args, stdout=out)
    return out.getvalue()


def roles_of(username: str) -> list[str]:
    user = get_user_model().objects.get(username=username)
    return sorted(g.name for g in user.groups.all())


@pytest.fixture
def password_env(monkeypatch):
    monkeypatch.setenv("TASKTRAIL_PASSWORD", PASSWORD)


@pytest.fixture
def no_terminal(monkeypatch):
    """Standard input as a script has it: not a terminal, nothing to read."""
    monkeypatch.setattr("sys.stdin", io.StringIO(""))


def test_creates_a_user_who_can_log_in_with_the_role(password_env, client):
    assert run("alice", "--role", "operator") == "created alice with role operator\n"
    user = get_user_model().objects.get(username="alice")
    assert roles_of("alice") == ["operator"]
    assert not user.is_superuser and not user.is_staff
    assert user.has_perm("dashboard.retry_taskrun") and not user.has_perm("dashboard.bulk_over_cap")
    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302


def test_rerun_changes_the_role_and_says_so(password_env, no_terminal, monkeypatch):
    run("alice", "--role", "viewer")
    other = Group.objects.create(name="night-shift")
    get_user_model().objects.get(username="alice").groups.add(other)
    monkeypatch.delenv("TASKTRAIL_PASSWORD")
    assert run("alice", "--role", "admin") == "alice: role viewer -> admin\n"
    assert roles_of("alice") == ["admin", "night-shift"]  # a group of one's own is kept
    assert get_user_model().objects.get(username="alice").is_superuser
    assert run("alice", "--role", "viewer") == "alice: role admin -> viewer\n"
    user = get_user_model().objects.get(username="alice")
    assert not user.is_superuser and not user.has_perm("dashboard.retry_taskrun")
    assert user.check_password(PASSWORD)  # no password given: the old one stays
    assert run("alice", "--role", "viewer") == "alice already has role viewer\n"
    assert get_user_model().objects.filter(username="alice").count() == 1


def test_rerun_with_password_and_email(password_env):
    run("alice", "--role", "viewer")
    assert run("alice", "--role", "viewer", "--email", "a@example.com") == (
        "alice already has role viewer (password set, email a@example.com)\n"
    )
    assert get_user_model().objects.get(username="alice").email == "a@example.com"


def test_password_from_stdin(monkeypatch):
    monkeypatch.delenv("TASKTRAIL_PASSWORD", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    run("bob", "--role", "admin", "--password-stdin")
    assert get_user_model().objects.get(username="bob").check_password(PASSWORD)


def test_no_password(no_terminal):
    assert "no password" in run("carol", "--role", "viewer", "--no-password")
    assert not get_user_model().objects.get(username="carol").has_usable_password()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["alice", "--role", "boss"], "unknown role 'boss': use one of viewer, operator, admin"),
        (["al ice", "--role", "viewer"], "username 'al ice' refused"),
        (["   ", "--role", "viewer"], "the username is empty"),
        (["x" * 151, "--role", "viewer"], "at most 150 characters"),
        (["alice", "--role", "viewer", "--email", "nope"], "not an email address: 'nope'"),
    ],
)
def test_bad_input_is_refused_and_nothing_written(password_env, args, message):
    with pytest.raises(CommandError, match=message):
        run(*args)
    assert not get_user_model().objects.exists()


def test_a_new_user_without_a_password_source_is_refused(no_terminal, monkeypatch):
    monkeypatch.delenv("TASKTRAIL_PASSWORD", raising=False)
    with pytest.raises(CommandError, match="set TASKTRAIL_PASSWORD, pipe it with --password-stdin"):
        run("alice", "--role", "viewer")
    assert not get_user_model().objects.exists()


def test_a_weak_password_is_refused(monkeypatch):
    monkeypatch.setenv("TASKTRAIL_PASSWORD", "short")
    with pytest.raises(CommandError, match="password refused: This password is too short"):
        run("alice", "--role", "viewer")
    assert not get_user_model().objects.exists()


def test_empty_stdin_password_is_refused(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    with pytest.raises(CommandError, match="standard input held no password"):
        run("alice", "--role", "viewer", "--password-stdin")


def test_missing_role_groups_ask_for_migrate(password_env):
    Group.objects.filter(name__in=list(ROLES)).delete()
    with pytest.raises(CommandError, match="run `tasktrail migrate` first"):
        run("alice", "--role", "viewer")

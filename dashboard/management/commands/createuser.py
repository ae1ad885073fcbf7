"""``tasktrail createuser NAME --role viewer|operator|admin``: add a login, or change its role.

The password, in this order: one line on standard input with ``--password-stdin``; the
``TASKTRAIL_PASSWORD`` variable; a prompt when standard input is a terminal. ``--no-password``
makes a login that cannot sign in with a password (until ``changepassword``). Run again on an
existing user, it changes the role (and the email or password when given) and says so.

The role is the user's one role group (``dashboard.roles``); other groups are kept. ``admin`` also
makes the user a Django superuser (the Django admin, user management); the other roles clear it, so
a lowered role really loses its rights.
"""

from __future__ import annotations

import getpass
import os
import sys
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_email
from django.db import transaction

from dashboard.roles import ROLES

PASSWORD_VARIABLE = "TASKTRAIL_PASSWORD"  # noqa: S105 (the name of a variable)


class Command(BaseCommand):
    help = (
        "Add a login with a role (viewer, operator, admin), or change an existing user's role. "
        f"Password: --password-stdin, else ${PASSWORD_VARIABLE}, else a prompt on a terminal; "
        "--no-password for none. Example: "
        f"{PASSWORD_VARIABLE}=... tasktrail createuser alice --role operator"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--role", required=True, help=f"One of: {', '.join(ROLES)}.", metavar="ROLE"
        )
        parser.add_argument("--email", default=None, help="The user's email address.")
        source = parser.add_mutually_exclusive_group()
        source.add_argument(
            "--password-stdin",
            action="store_true",
            help="Read the password from the first line of standard input.",
        )
        source.add_argument(
            "--no-password",
            action="store_true",
            help="A new user gets no usable password; an existing one keeps its own.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        role = str(options["role"]).strip().lower()
        if role not in ROLES:
            raise CommandError(f"unknown role {options['role']!r}: use one of {', '.join(ROLES)}")
        user_model = get_user_model()
        username = self._clean_username(user_model, options["username"])
        email = self._clean_email(options["email"])
        groups = {g.name: g for g in Group.objects.filter(name__in=list(ROLES))}
        if role not in groups:
            raise CommandError("the role groups are missing: run `tasktrail migrate` first")

        user: Any = user_model.objects.filter(username=username).first()
        password = None if options["no_password"] else self._password(options, new=user is None)
        if password is not None:
            candidate = user or user_model(username=username, email=email or "")
            try:
                validate_password(password, candidate)
            except ValidationError as exc:
                raise CommandError("password refused: " + " ".join(exc.messages)) from None

        with transaction.atomic():
            created = user is None
            if created:
                user = user_model(username=username, email=email or "")
                user.set_unusable_password()
            before = sorted(g.name for g in user.groups.all() if g.name in ROLES) if user.pk else []
            if password is not None:
                user.set_password(password)
            if email is not None:
                user.email = email
            user.is_staff = user.is_superuser = role == "admin"
            user.save()
            user.groups.remove(*[g for name, g in groups.items() if name != role])
            user.groups.add(groups[role])

        if created:
            note = "" if password is not None else " (no password: set one with changepassword)"
            self.stdout.write(f"created {username} with role {role}{note}")
        elif before == [role]:
            self.stdout.write(f"{username} already has role {role}" + _changes(password, email))
        else:
            was = ", ".join(before) or "none"
            self.stdout.write(f"{username}: role {was} -> {role}" + _changes(password, email))

    @staticmethod
    def _clean_username(user_model: Any, raw: str) -> str:
        field = user_model._meta.get_field(user_model.USERNAME_FIELD)
        name = str(raw).strip()
        if not name:
            raise CommandError("the username is empty")
        try:
            field.clean(name, None)
        except ValidationError as exc:
            raise CommandError(f"username {name!r} refused: " + " ".join(exc.messages)) from None
        return name

    @staticmethod
    def _clean_email(raw: str | None) -> str | None:
        if raw is None:
            return None
        email = raw.strip()
        if email:
            try:
                validate_email(email)
            except ValidationError:
                raise CommandError(f"not an email address: {email!r}") from None
        return email

    def _password(self, options: dict[str, Any], *, new: bool) -> str | None:
        if options["password_stdin"]:
            password = sys.stdin.readline().rstrip("\r\n")
            if not password:
                raise CommandError("--password-stdin: standard input held no password")
            return password
        from_env = os.environ.get(PASSWORD_VARIABLE)
        if from_env:
            return from_env
        if not sys.stdin.isatty():
            if new:
                raise CommandError(
                    f"no password for the new user: set {PASSWORD_VARIABLE}, pipe it with "
                    "--password-stdin, or use --no-password"
                )
            return None  # an existing user keeps its password
        if not new and input("Change the password? [y/N] ").strip().lower() not in ("y", "yes"):
            return None
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Password (again): "):
            raise CommandError("the passwords do not match")
        if not first:
            raise CommandError("the password is empty")
        return first


def _changes(password: str | None, email: str | None) -> str:
    parts = ["password set"] if password is not None else []
    if email is not None:
        parts.append(f"email {email or '(none)'}")
    return f" ({', '.join(parts)})" if parts else ""

"""Writes of a user's own preferences."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser

from dashboard.models import UserPreference
from dashboard.timezones import valid_zone


class PreferenceError(ValueError):
    """The choice cannot be kept; the message says why, for the person who made it."""


def user_time_zone_set(*, user: AbstractBaseUser, time_zone: str) -> None:
    """Keep the user's zone ("" follows the browser). The name must be in the zone database."""
    if time_zone and valid_zone(time_zone) is None:
        raise PreferenceError(f"“{time_zone[:64]}” is not a time zone name, e.g. Europe/Paris.")
    UserPreference.objects.update_or_create(user_id=user.pk, defaults={"time_zone": time_zone})

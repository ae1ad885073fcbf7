"""A user's own choices for how pages read."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from dashboard.models import UserPreference


def user_time_zone(*, user: AbstractBaseUser | AnonymousUser) -> str:
    """The zone name the user chose; "" when they follow their browser."""
    if not user.is_authenticated:
        return ""
    zone = UserPreference.objects.filter(user_id=user.pk).values_list("time_zone", flat=True)
    return zone.first() or ""

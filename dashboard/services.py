"""Writes made on behalf of a person (operator actions come here too)."""

from __future__ import annotations

from django.contrib.auth.models import User

from dashboard.models import ApiToken


def api_token_create(*, user: User, name: str) -> str:
    """Create a token for ``user`` and return it; only its hash is kept."""
    key = ApiToken.new_key()
    ApiToken.objects.create(user=user, name=name[:100], key_hash=ApiToken.hash(key))
    return key

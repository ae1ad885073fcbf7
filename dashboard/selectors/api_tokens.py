"""Who a bearer token belongs to."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.utils import timezone

from dashboard.models import ApiToken


def api_token_user(*, key: str) -> User | None:
    if not key.startswith(ApiToken.PREFIX) or len(key) > 200:
        return None
    token = ApiToken.objects.select_related("user").filter(key_hash=ApiToken.hash(key)).first()
    if token is None or not token.user.is_active:
        return None
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    return token.user

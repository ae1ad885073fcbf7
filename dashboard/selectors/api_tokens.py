"""Who a bearer token belongs to, and the tokens an administrator can list."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.utils import timezone

from dashboard.models import ApiToken

MAX_KEY_CHARS = 200


class Refusal(enum.StrEnum):
    MALFORMED = "not a tasktrail token"
    UNKNOWN = "unknown token"
    EXPIRED = "expired token"
    REVOKED = "revoked token"
    INACTIVE_USER = "the token's user is inactive"


@dataclass(frozen=True)
class TokenCheck:
    user: User | None
    refusal: Refusal | None = None
    token_id: int | None = None  # a known token's id (logged on refusal; never the key)


def check_api_token(*, key: str) -> TokenCheck:
    """The user a key authenticates, or why it is refused. A success records its use."""
    if not key.startswith(ApiToken.PREFIX) or len(key) > MAX_KEY_CHARS:
        return TokenCheck(None, Refusal.MALFORMED)
    token = ApiToken.objects.select_related("user").filter(key_hash=ApiToken.hash(key)).first()
    if token is None:
        return TokenCheck(None, Refusal.UNKNOWN)
    now = timezone.now()
    if token.revoked_at is not None:
        return TokenCheck(None, Refusal.REVOKED, token.pk)
    if token.expires_at <= now:
        return TokenCheck(None, Refusal.EXPIRED, token.pk)
    if not token.user.is_active:
        return TokenCheck(None, Refusal.INACTIVE_USER, token.pk)
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return TokenCheck(token.user, None, token.pk)


def api_token_user(*, key: str) -> User | None:
    return check_api_token(key=key).user


def token_state(token: ApiToken) -> str:
    if token.revoked_at is not None:
        return "revoked"
    return "expired" if token.expires_at <= timezone.now() else "active"


def api_tokens(*, username: str | None = None) -> QuerySet[ApiToken]:
    """Every token (newest first), or one user's; the key itself is never stored."""
    tokens = ApiToken.objects.select_related("user").order_by("-created_at", "-id")
    return tokens.filter(user__username=username) if username else tokens

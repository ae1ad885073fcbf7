"""HTTP hardening that Django 5.2 does not ship: a Content-Security-Policy header, the login
lockout check (django-axes) as an authentication backend, and a limit on failures per client
address across usernames (password spraying)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from axes.backends import AxesStandaloneBackend
from axes.exceptions import AxesBackendPermissionDenied
from axes.handlers.proxy import AxesProxyHandler
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

# Scripts only from this origin, and no eval: an injected <script>, on…= attribute or htmx
# expression (a trigger filter, hx-on, js: values) never runs. htmx is told not to eval at all
# (base.html's htmx-config); pollers skip hidden tabs in tasktrail.js instead of a trigger filter.
# Styles allow inline: htmx adds its indicator <style> and the timeline positions its
# bars with style attributes.
CONTENT_SECURITY_POLICY: Final = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class ContentSecurityPolicyMiddleware:
    """Adds the policy to every response that does not set its own."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response


def lockout_username(request: HttpRequest, credentials: dict[str, Any] | None = None) -> str | None:
    """The username a failed login is counted under, cut to Django's 150 characters (no account
    has a longer one): a 100 kB username must not break the attempt's row."""
    value = (credentials or {}).get("username") if credentials else request.POST.get("username")
    return None if value is None else str(value)[:150]


def address_failures(ip_address: str | None) -> int:
    """Failed logins (and refused API tokens) from one client address within the cool-off, over
    every username: read from django-axes' own rows (one per username, address and user agent,
    deleted after the cool-off), so the count needs no store of its own."""
    if not ip_address:
        return 0
    since = timezone.now() - settings.AXES_COOLOFF_TIME
    total = AccessAttempt.objects.filter(ip_address=ip_address, attempt_time__gte=since).aggregate(
        n=Sum("failures_since_start")
    )["n"]
    return int(total or 0)


def address_locked_out(request: HttpRequest) -> bool:
    """True once the request's client address reached ``TASKTRAIL_LOGIN_ADDRESS_FAILURES``
    failures across usernames (password spraying); 0 turns the limit off."""
    limit = int(getattr(settings, "TASKTRAIL_LOGIN_ADDRESS_FAILURES", 0))
    if limit <= 0:
        return False
    AxesProxyHandler.update_request(request)  # sets axes_ip_address as the lockout reads it
    return address_failures(getattr(request, "axes_ip_address", None)) >= limit


class LoginLockoutBackend(AxesStandaloneBackend):
    """Refuses a login while its username and client address are locked out, or while the
    address has failed too often across usernames.

    A call without a request (a shell, a management command) has no client address to count
    against: it is not checked, and the next backend decides as usual.
    """

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> None:
        if request is None:
            return None
        super().authenticate(request, username, password, **kwargs)
        if address_locked_out(request):
            # The lockout middleware shows the locked-out page (429); with
            # AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT off the refusal adds no row, so a
            # locked-out address cannot grow the table with new usernames.
            request.axes_locked_out = True  # type: ignore[attr-defined]
            request.tasktrail_address_locked_out = True  # type: ignore[attr-defined]
            raise AxesBackendPermissionDenied("too many failed logins from this address")
        return None

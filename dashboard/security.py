"""HTTP hardening that Django 5.2 does not ship: a Content-Security-Policy header, and the login
lockout check (django-axes) as an authentication backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from axes.backends import AxesStandaloneBackend
from django.http import HttpRequest, HttpResponse

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


class LoginLockoutBackend(AxesStandaloneBackend):
    """Refuses a login while its username and client address are locked out.

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
        return super().authenticate(request, username, password, **kwargs)

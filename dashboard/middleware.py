"""Pages a logged-in person sees are theirs alone: never kept by a browser's disk cache or a shared
proxy (a task's arguments, an audit log), while static files stay cacheable."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_cache_control, patch_vary_headers


class PrivateNoStoreMiddleware:
    """``Cache-Control: no-store, private`` on every answer to an authenticated request (a session
    or an API token). After AuthenticationMiddleware; WhiteNoise answers static files before it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            if "no-store" not in response.get("Cache-Control", ""):  # a view's own no-store stays
                patch_cache_control(response, no_store=True, private=True)
            patch_vary_headers(response, ("Cookie", "Authorization"))
        return response

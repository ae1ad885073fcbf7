"""Which time zone pages read in: the user's chosen zone, else the browser's, else TIME_ZONE.

The browser's zone comes from a cookie tasktrail.js sets from
``Intl.DateTimeFormat().resolvedOptions().timeZone``; any name is checked against the zone
database before it is used.
"""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from dashboard.selectors.preferences import user_time_zone

BROWSER_ZONE_COOKIE = "tasktrail_tz"
SESSION_ZONE = "tasktrail_zone"  # the user's chosen zone, read once per session
MAX_ZONE_LENGTH = 64


@functools.cache
def known_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def valid_zone(name: str | None) -> zoneinfo.ZoneInfo | None:
    if not name or len(name) > MAX_ZONE_LENGTH or name not in known_zones():
        return None
    return zoneinfo.ZoneInfo(name)


def viewer_zone(request: HttpRequest) -> zoneinfo.ZoneInfo | None:
    """The zone this request reads in; None: the default (settings.TIME_ZONE)."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        # Kept in the session after the first read: pages poll every few seconds, and the choice
        # changes only through the preferences page, which writes it there too.
        session = getattr(request, "session", None)
        name = session.get(SESSION_ZONE) if session is not None else None
        if name is None:
            name = user_time_zone(user=user)
            if session is not None:
                session[SESSION_ZONE] = name
        chosen = valid_zone(name)
        if chosen is not None:
            return chosen
    return valid_zone(request.COOKIES.get(BROWSER_ZONE_COOKIE))


class ViewerTimeZoneMiddleware:
    """Activates the viewer's zone for the request (after AuthenticationMiddleware)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        zone = viewer_zone(request)
        if zone is None:
            timezone.deactivate()
        else:
            timezone.activate(zone)
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()  # a worker thread's next request starts from the default

"""Preferences: the time zone a person reads times in. Any logged-in user may set their own."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from dashboard.preferences import PreferenceError, user_time_zone_set
from dashboard.selectors.preferences import user_time_zone
from dashboard.timezones import BROWSER_ZONE_COOKIE, SESSION_ZONE, known_zones, valid_zone
from dashboard.views.requests import HtmxHttpRequest


@require_http_methods(["GET", "POST"])
@login_required
def preferences_page(request: HtmxHttpRequest) -> HttpResponse:
    chosen = user_time_zone(user=request.user)
    status = 200
    error = ""
    if request.method == "POST":
        wanted = (request.POST.get("time_zone") or "").strip()
        try:
            user_time_zone_set(user=request.user, time_zone=wanted)  # type: ignore[arg-type]
        except PreferenceError as exc:
            error, status, chosen = str(exc), 400, wanted
        else:
            request.session[SESSION_ZONE] = wanted  # what the middleware reads from now on
            shown = wanted or "your browser's zone"
            messages.success(request, f"Times now read in {shown}.")
            return redirect("preferences")
    browser = valid_zone(request.COOKIES.get(BROWSER_ZONE_COOKIE))
    context = {
        "zones": sorted(known_zones()),
        "chosen": chosen,
        "browser_zone": browser.key if browser else "",
        "active_zone": timezone.get_current_timezone_name(),
        "error": error,
    }
    return render(request, "dashboard/preferences.html", context, status=status)

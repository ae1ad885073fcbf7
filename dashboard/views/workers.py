"""The Workers page: every worker as its heartbeats last described it, refreshed by htmx."""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from dashboard.selectors.system import monitor_status
from dashboard.selectors.workers import (
    MAX_RUNNING_LINKS,
    UNREGISTERED_ROWS,
    workers_overview,
)
from dashboard.views.access import viewer_required
from dashboard.views.requests import HtmxHttpRequest


@require_GET
@viewer_required
@vary_on_headers("HX-Request")
def workers_page(request: HtmxHttpRequest) -> HttpResponse:
    context = {
        "overview": workers_overview(),
        "max_running_links": MAX_RUNNING_LINKS,
        "unregistered_rows": UNREGISTERED_ROWS,
    }
    if request.htmx:
        return render(request, "dashboard/partials/workers_panel.html", context)
    context["monitor"] = monitor_status()  # the banner in base.html; a poll does not redraw it
    return render(request, "dashboard/workers.html", context)

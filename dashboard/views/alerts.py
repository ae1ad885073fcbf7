"""The incidents page and the Prometheus endpoint."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from dashboard import metrics
from dashboard.filters import parse_number
from dashboard.models import AlertIncident
from dashboard.selectors.alerts import incident_page
from dashboard.views.access import viewer_required


@require_GET
@viewer_required
def incidents_page(request: HttpRequest) -> HttpResponse:
    rule = request.GET.get("rule") or ""
    if rule and rule not in AlertIncident.Rule.values:
        return render(
            request,
            "dashboard/bad_request.html",
            {"message": f"Unknown rule. Use one of: {', '.join(AlertIncident.Rule.values)}."},
            status=400,
        )
    before = parse_number(request.GET.get("before"))
    context = {
        "page": incident_page(before=before, rule=rule),
        "rule": rule,
        "rules": AlertIncident.Rule,
        "before": before,
        "now": timezone.now(),
    }
    return render(request, "dashboard/incidents.html", context)


@require_GET
@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Off (404) unless TASKTRAIL_METRICS_TOKEN is set; then only with that bearer token."""
    token = str(settings.TASKTRAIL_METRICS_TOKEN or "")
    if not token:
        raise Http404("Metrics are off: set TASKTRAIL_METRICS_TOKEN.")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        response = HttpResponse(
            "A bearer token is required.\n", status=401, content_type="text/plain"
        )
        response["WWW-Authenticate"] = 'Bearer realm="tasktrail metrics"'
        return response
    return HttpResponse(metrics.render(), content_type=CONTENT_TYPE_LATEST)

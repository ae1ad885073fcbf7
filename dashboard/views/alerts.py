"""The incidents page, acknowledging an incident, and the Prometheus endpoint."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST
from prometheus_client import CONTENT_TYPE_LATEST

from dashboard import metrics
from dashboard.filters import parse_number
from dashboard.models import AlertIncident
from dashboard.selectors.alerts import incident_page, incident_row
from dashboard.services_incidents import (
    SILENCES,
    AcknowledgeInputError,
    AcknowledgeResult,
    incident_acknowledge,
)
from dashboard.views.access import VIEW_TASKS, viewer_required
from dashboard.views.outcomes import flash_outcome, htmx_status
from dashboard.views.requests import HtmxHttpRequest


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
        "silences": list(SILENCES),
    }
    return render(request, "dashboard/incidents.html", context)


def _answer_without_incident(
    request: HtmxHttpRequest, incident_id: int, result: AcknowledgeResult | None, error: str
) -> HttpResponse:
    """The answer to someone who may not read the incidents: the refusal (or the input error) and
    nothing of the incident, neither its figures nor who acknowledged it."""
    message = error or (result.message if result else "")
    status = 403 if result is not None and not result.permitted else 400
    if request.htmx:
        context = {"incident_id": incident_id, "message": message}
        return render(
            request, "dashboard/partials/incident_answer.html", context, status=htmx_status(status)
        )
    template = "403.html" if status == 403 else "dashboard/bad_request.html"
    return render(request, template, {"message": message}, status=status)


def _acknowledged(
    request: HtmxHttpRequest, incident_id: int, result: AcknowledgeResult | None, error: str
) -> HttpResponse:
    if not request.user.has_perm(VIEW_TASKS):
        return _answer_without_incident(request, incident_id, result, error)
    status = flash_outcome(request, result, error)
    if request.htmx:
        incident = incident_row(incident_id=incident_id)
        if incident is None:
            return HttpResponse("No such incident.", status=404)
        context = {
            "i": incident,
            "open": incident.is_open,
            "silences": list(SILENCES),
            "now": timezone.now(),
            "row_messages": True,  # the page shows them above; the swapped row shows them here
        }
        # swapped in place, so the row shows why
        return render(
            request, "dashboard/partials/incident_row.html", context, status=htmx_status(status)
        )
    if status == 403:
        return render(
            request, "403.html", {"message": result.message if result else ""}, status=403
        )
    return redirect(f"{reverse('incidents')}#incident-{incident_id}")


@require_POST
@login_required
def incident_acknowledge_view(request: HtmxHttpRequest, incident_id: int) -> HttpResponse:
    """Acknowledge with a note and a silence. Every logged-in request reaches the service, which
    refuses and audits (a check here would hide refusals from the audit)."""
    silence = SILENCES.get(request.POST.get("silence", ""))
    if silence is None:
        return _acknowledged(request, incident_id, None, "Choose how long to silence reminders.")
    try:
        result = incident_acknowledge(
            user=request.user,  # type: ignore[arg-type]
            incident_id=incident_id,
            note=request.POST.get("note", ""),
            silence_for=silence,
        )
    except AcknowledgeInputError as exc:
        return _acknowledged(request, incident_id, None, str(exc))
    return _acknowledged(request, incident_id, result, "")


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

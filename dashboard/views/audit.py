"""One audited action and the tasks it touched: where a bulk row on the Audit page leads."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from dashboard.selectors.actions import ACTION_TARGETS_SHOWN, audit_action
from dashboard.views.access import viewer_required


@require_GET
@viewer_required
def audit_action_page(request: HttpRequest, action_id: int) -> HttpResponse:
    detail = audit_action(action_id=action_id)
    if detail is None:
        return render(
            request,
            "dashboard/bad_request.html",
            {"message": "No audited action with this number."},
            status=404,
        )
    return render(
        request, "dashboard/audit_action.html", {"detail": detail, "shown": ACTION_TARGETS_SHOWN}
    )

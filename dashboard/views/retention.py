"""The Retention page: what is kept, for how long, and what the next pass removes (admins)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from dashboard.selectors.retention import NEXT_PASS_CAP, retention_view
from dashboard.views.access import admin_required


@require_GET
@admin_required
def retention_page(request: HttpRequest) -> HttpResponse:
    return render(
        request, "dashboard/retention.html", {"r": retention_view(), "cap": NEXT_PASS_CAP}
    )

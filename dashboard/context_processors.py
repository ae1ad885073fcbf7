"""Template context for every page: the open incidents, for the banner in base.html."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from dashboard.models import AlertIncident
from dashboard.selectors.alerts import open_incidents
from dashboard.views.access import VIEW_TASKS


def alerts(request: HttpRequest) -> dict[str, Any]:
    def shown() -> list[AlertIncident]:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or not user.has_perm(VIEW_TASKS):
            return []
        return open_incidents()

    # Lazy: nothing runs unless a template shows the banner (htmx partials do not).
    return {"open_incidents": SimpleLazyObject(shown)}

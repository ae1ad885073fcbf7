"""The task page's result section, loaded by htmx after the page: reading the shop's result
backend may take up to the read deadline, and the page itself never waits on it."""

from __future__ import annotations

from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from dashboard.filters import is_task_id
from dashboard.selectors.results import MAX_SHOWN_CHARS, task_result
from dashboard.views.access import viewer_required
from dashboard.views.requests import HtmxHttpRequest


@require_GET
@viewer_required
def task_result_partial(request: HtmxHttpRequest, task_id: str) -> HttpResponse:
    result = task_result(task_id=task_id) if is_task_id(task_id) else None
    if result is None:
        raise Http404("No task with this id has been recorded.")
    context = {"result": result, "shown_kib": MAX_SHOWN_CHARS // 1024}
    return render(request, "dashboard/partials/task_result.html", context)

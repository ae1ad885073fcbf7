"""The HTML pages and their htmx partials. Every view requires a login; partials too."""

from __future__ import annotations

from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import HTMX_STOP_POLLING

from dashboard.filters import WINDOWS, FilterError, is_task_id, parse_task_filter, text_param
from dashboard.models import TaskState
from dashboard.pagination import Cursor
from dashboard.selectors.action_options import task_action_options
from dashboard.selectors.actions import actions_on_task
from dashboard.selectors.alerts import queue_states
from dashboard.selectors.queue_pauses import not_measured, queue_pauses
from dashboard.selectors.queues import queue_overview
from dashboard.selectors.system import monitor_status
from dashboard.selectors.task_facts import error_line, fill_runtimes
from dashboard.selectors.tasks import (
    known_task_names,
    overview,
    task_detail,
    task_list,
    task_name_prefix,
    task_type_stats,
)
from dashboard.selectors.timeline import task_timeline
from dashboard.views.access import viewer_required
from dashboard.views.requests import HtmxHttpRequest


def _bad_request(request: HtmxHttpRequest, message: str) -> HttpResponse:
    return render(request, "dashboard/bad_request.html", {"message": message}, status=400)


@require_GET
@viewer_required
@vary_on_headers("HX-Request")
def overview_page(request: HtmxHttpRequest) -> HttpResponse:
    context = {
        "overview": overview(),
        "monitor": monitor_status(),
        "states": TaskState,
        "queue_states": queue_states(),
        "name_prefix": task_name_prefix(),
    }
    if request.htmx:
        return render(request, "dashboard/partials/overview_panel.html", context)
    return render(request, "dashboard/overview.html", context)


@require_GET
@viewer_required
@vary_on_headers("HX-Request")
def task_list_page(request: HtmxHttpRequest) -> HttpResponse:
    try:
        task_filter = parse_task_filter(request.GET)
        cursor = Cursor.decode(request.GET["cursor"]) if request.GET.get("cursor") else None
        newer = Cursor.decode(request.GET["newer"]) if request.GET.get("newer") else None
    except FilterError as exc:
        return _bad_request(request, str(exc))
    page = task_list(task_filter=task_filter, cursor=cursor, newer_than=newer)
    context = {
        "page": page,
        "filter": task_filter,
        "cursor": cursor,
        "states": TaskState,
        "windows": WINDOWS,
        "live": cursor is None,  # only the first page follows new rows
        "monitor": monitor_status(),
        "name_prefix": task_name_prefix(),
    }
    if request.htmx and newer is not None:
        # the rows to prepend, and the poller moved on to the newest of them
        if not page.rows:
            return HttpResponse(status=204)
        return render(request, "dashboard/partials/task_new_rows.html", context)
    if request.htmx:
        return render(request, "dashboard/partials/task_results.html", context)
    if task_filter.q and cursor is None and len(page.rows) == 1 and page.next_cursor is None:
        # a search that found one task: open it (the live poll above never moves the page)
        return redirect("task-detail", task_id=page.rows[0].task_id)
    context["task_names"] = known_task_names()
    return render(request, "dashboard/tasks.html", context)


@require_GET
@viewer_required
@vary_on_headers("HX-Request")
def task_detail_page(request: HtmxHttpRequest, task_id: str) -> HttpResponse:
    detail = task_detail(task_id=task_id) if is_task_id(task_id) else None
    if detail is None:
        raise Http404("No task with this id has been recorded.")
    now = timezone.now()
    fill_runtimes(detail.task, detail.attempts)
    # While the task runs, polls leave the Actions panel as it is (an operator may be typing a
    # reason); the poll that finds it finished redraws it, so Retry appears once it can succeed.
    redraw_actions = not request.htmx or detail.task.is_finished
    context = {
        "detail": detail,
        "task": detail.task,
        "error": error_line(detail.task),
        "timeline": task_timeline(detail, now=now),
        "actions": actions_on_task(task_id=task_id),
        "redraw_actions": redraw_actions,
        "options": (
            task_action_options(user=request.user, task=detail.task) if redraw_actions else {}
        ),
    }
    if request.htmx:
        response = render(request, "dashboard/partials/task_story.html", context)
        if detail.task.is_finished:
            response.status_code = HTMX_STOP_POLLING  # finished: nothing left to follow
        return response
    return render(request, "dashboard/task_detail.html", context)


@require_GET
@viewer_required
def task_stats_page(request: HtmxHttpRequest) -> HttpResponse:
    window = request.GET.get("window") or "24h"
    if window not in WINDOWS:
        return _bad_request(request, f"Unknown window. Use one of: {', '.join(WINDOWS)}.")
    try:
        name = text_param(request.GET, "name")
    except FilterError as exc:
        return _bad_request(request, str(exc))
    stats = task_type_stats(since=timezone.now() - WINDOWS[window], name=name)
    return render(
        request,
        "dashboard/task_stats.html",
        {
            "stats": stats.rows,
            "more_names": stats.more_names,
            "window": window,
            "windows": WINDOWS,
            "name": name,
        },
    )


@require_GET
@viewer_required
@vary_on_headers("HX-Request")
def queues_page(request: HtmxHttpRequest) -> HttpResponse:
    overview = queue_overview()
    context = {"overview": overview, "monitor": monitor_status()}
    pauses = queue_pauses()  # paused queues: a cell of each row, and a list of those not measured
    context["pauses"] = pauses
    context["unmeasured_pauses"] = not_measured(pauses, {q.name for q in overview.queues})
    if request.htmx:
        return render(request, "dashboard/partials/queue_table.html", context)
    return render(request, "dashboard/queues.html", context)

"""The Tasks list's poll: rows that arrived since the newest one shown, and shown rows that changed.

The browser sends ``seen=<row id>.<version>,...`` for the rows that can still change (see
``static/js/tasktrail.js``); the answer prepends the new rows and swaps the changed ones by id.
"""

from __future__ import annotations

from django.http import HttpResponse, QueryDict
from django.shortcuts import render
from django.views.decorators.http import require_GET

from dashboard.filters import FilterError, parse_number, parse_task_filter
from dashboard.pagination import Cursor
from dashboard.selectors.live import MAX_SEEN, live_rows
from dashboard.selectors.tasks import task_name_prefix
from dashboard.views.access import viewer_required
from dashboard.views.requests import HtmxHttpRequest

MAX_VERSION_LENGTH = 32


def parse_seen(params: QueryDict) -> dict[int, str]:
    """``id.version`` pairs; anything malformed is a bad request, not a silent skip."""
    raw = params.get("seen") or ""
    seen: dict[int, str] = {}
    for item in raw.split(",")[:MAX_SEEN] if raw else []:
        ident, _, version = item.partition(".")
        number = parse_number(ident)
        if number is None or not version or len(version) > MAX_VERSION_LENGTH:
            raise FilterError("The list's live update is not valid (bad “seen”). Reload the page.")
        seen[number] = version
    return seen


@require_GET
@viewer_required
def task_live_rows(request: HtmxHttpRequest) -> HttpResponse:
    try:
        task_filter = parse_task_filter(request.GET)
        newer = Cursor.decode(request.GET.get("newer") or "")
        seen = parse_seen(request.GET)
    except FilterError as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain; charset=utf-8")
    update = live_rows(task_filter=task_filter, newer_than=newer, seen=seen)
    if not update.new_rows and not update.changed_rows:
        return HttpResponse(status=204)  # htmx swaps nothing; the poller keeps its cursor
    context = {
        "page": {"rows": update.new_rows, "newest": update.newest},
        "changed_rows": update.changed_rows,
        "filter": task_filter,
        "name_prefix": task_name_prefix(),
    }
    return render(request, "dashboard/partials/task_new_rows.html", context)

"""Read-only JSON API: ``GET /api/tasks`` and ``GET /api/tasks/<task_id>``.

Authenticated by the session (a logged-in browser) or ``Authorization: Bearer tt_…``.
Errors are JSON: ``{"error": "…"}`` with 400, 401 or 404.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.http import require_GET

from dashboard.filters import FilterError, is_task_id, parse_number, parse_task_filter
from dashboard.models import TaskAttempt, TaskRun
from dashboard.pagination import Cursor
from dashboard.redaction import redacted_call
from dashboard.selectors.api_tokens import api_token_user
from dashboard.selectors.results import django_db_status
from dashboard.selectors.tasks import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, task_detail, task_list
from dashboard.views.access import VIEW_TASKS

View = Callable[..., HttpResponse]


def error(message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def api_auth_required(view: View) -> View:
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            header = request.headers.get("Authorization", "")
            scheme, _, key = header.partition(" ")
            user = api_token_user(key=key.strip()) if scheme.lower() == "bearer" else None
            if user is None:
                response = error("Log in, or send “Authorization: Bearer <token>”.", 401)
                response["WWW-Authenticate"] = 'Bearer realm="tasktrail"'
                return response
            request.user = user
        if not request.user.has_perm(VIEW_TASKS):
            return error("You may not read task records.", 403)
        return view(request, *args, **kwargs)

    return wrapped


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def task_json(task: TaskRun) -> dict[str, Any]:
    return {
        "task_id": task.task_id,
        "name": task.name,
        "queue": task.queue,
        "input_id": task.input_id,
        "state": task.state,
        "retries": task.retries,
        "error": {"type": task.exc_type, "message": task.exc_message}
        if task.exc_type or task.exc_message
        else None,
        "first_seen_at": _iso(task.first_seen_at),
        "published_at": _iso(task.published_at),
        "started_at": _iso(task.started_at),
        "finished_at": _iso(task.finished_at),
        "runtime": task.runtime,
        "queue_wait": task.queue_wait,
        "worker": task.worker,
        "trace_id": task.trace_id,
        "url": reverse("task-detail", args=[task.task_id]),
    }


def attempt_json(attempt: TaskAttempt) -> dict[str, Any]:
    return {
        "attempt": attempt.attempt,
        "outcome": attempt.outcome,
        "worker": attempt.worker,
        "published_at": _iso(attempt.published_at),
        "started_at": _iso(attempt.started_at),
        "finished_at": _iso(attempt.finished_at),
        "runtime": attempt.runtime,
        "queue_wait": attempt.queue_wait,
        "error": {"type": attempt.exc_type, "message": attempt.exc_message}
        if attempt.exc_type or attempt.exc_message
        else None,
        "traceback": attempt.traceback,
        "span_id": attempt.span_id,
    }


@require_GET
@api_auth_required
def api_tasks(request: HttpRequest) -> HttpResponse:
    try:
        task_filter = parse_task_filter(request.GET)
        cursor = Cursor.decode(request.GET["cursor"]) if request.GET.get("cursor") else None
        limit = parse_number(request.GET.get("limit") or str(DEFAULT_PAGE_SIZE))
        if limit is None or not 1 <= limit <= MAX_PAGE_SIZE:
            raise FilterError(f"“limit” must be a number from 1 to {MAX_PAGE_SIZE}.")
        limit_text = str(limit)
    except FilterError as exc:
        return error(str(exc), 400)
    page = task_list(task_filter=task_filter, cursor=cursor, limit=limit)
    next_url = None
    if page.next_cursor is not None:
        query = task_filter.querystring(cursor=page.next_cursor.encode(), limit=limit_text)
        next_url = request.build_absolute_uri(f"{reverse('api-tasks')}?{query}")
    return JsonResponse({"results": [task_json(t) for t in page.rows], "next": next_url})


@require_GET
@api_auth_required
def api_task(request: HttpRequest, task_id: str) -> HttpResponse:
    detail = task_detail(task_id=task_id) if is_task_id(task_id) else None
    if detail is None:
        return error("No task with this id has been recorded.", 404)
    task = detail.task
    stored = django_db_status(task_id=task_id)
    shown = redacted_call(task.args, task.kwargs, task.arg_names, settings.TASKTRAIL_REDACT_KEYS)
    body = task_json(task) | {
        "args": shown.args,
        "kwargs": shown.kwargs,
        "args_dropped": task.args_dropped,
        "parent_id": task.parent_id,
        "root_id": task.root_id,
        "group_id": task.group_id,
        "retry_of": task.retry_of,
        "retried_as": detail.retried_as.task_id if detail.retried_as else None,
        "children": [c.task_id for c in detail.children],
        "result": {"status": stored["status"], "date_done": _iso(stored["date_done"])}
        if stored
        else None,
        "attempts": [attempt_json(a) for a in detail.attempts],
    }
    return JsonResponse(body)

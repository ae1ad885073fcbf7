"""Read-only JSON API: ``GET /api/tasks`` and ``GET /api/tasks/<task_id>``.

Authenticated by the session (a logged-in browser) or ``Authorization: Bearer tt_…``.
Errors are JSON: ``{"error": "…"}`` with 400, 401, 404, or 429 once an address has sent too many
refused tokens (counted as failed logins: see dashboard.security). A refused token is logged with
the client address, never the token.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.http import require_GET

from dashboard.filters import FilterError, is_task_id, parse_number, parse_task_filter
from dashboard.models import TaskAttempt, TaskRun
from dashboard.pagination import Cursor
from dashboard.redaction import redacted_call, scrub_text
from dashboard.security import address_locked_out
from dashboard.selectors.api_tokens import Refusal, TokenCheck, check_api_token
from dashboard.selectors.arg_names import known_arg_names
from dashboard.selectors.results import django_db_status
from dashboard.selectors.tasks import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, task_detail, task_list
from dashboard.views.access import VIEW_TASKS

View = Callable[..., HttpResponse]
TOKEN_USERNAME = "(api token)"  # noqa: S105  # the name refused token attempts are counted under
security_log = logging.getLogger("tasktrail.security")


def error(message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def _throttled(request: HttpRequest) -> bool:
    """Refused token attempts count as failed logins of TOKEN_USERNAME from the client address
    (django-axes' lockout), and toward the address's limit across usernames."""
    allowed = AxesProxyHandler.is_allowed(request, {"username": TOKEN_USERNAME})
    return not allowed or address_locked_out(request)


def _refused(request: HttpRequest, why: str, token_id: int | None) -> None:
    """Logged with the client address and the token's id when known, never the key."""
    address = getattr(request, "axes_ip_address", None) or request.META.get("REMOTE_ADDR")
    security_log.warning(
        "API token refused from %s: %s%s",
        address,
        why,
        f" (token id {token_id})" if token_id is not None else "",
    )
    user_login_failed.send(
        sender=__name__, credentials={"username": TOKEN_USERNAME}, request=request
    )
    request.axes_locked_out = False  # type: ignore[attr-defined]  # answered here, in JSON


def api_auth_required(view: View) -> View:
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            header = request.headers.get("Authorization", "")
            if header and _throttled(request):
                _refused(request, "too many failed attempts from this address", None)
                response = error("Too many failed attempts from this address; try later.", 429)
                response["Retry-After"] = str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
                return response
            scheme, _, key = header.partition(" ")
            if scheme.lower() == "bearer":
                check = check_api_token(key=key.strip())
            else:
                check = TokenCheck(None, Refusal.MALFORMED)
            if check.user is None:
                if header:
                    _refused(request, str(check.refusal), check.token_id)
                response = error("Log in, or send “Authorization: Bearer <token>”.", 401)
                response["WWW-Authenticate"] = 'Bearer realm="tasktrail"'
                return response
            request.user = check.user
        if not request.user.has_perm(VIEW_TASKS):
            return error("You may not read task records.", 403)
        return view(request, *args, **kwargs)

    return wrapped


def _scrubbed(text: str | None) -> str | None:
    """An error message or traceback with secret-looking values masked (dashboard.redaction)."""
    return None if text is None else scrub_text(text, settings.TASKTRAIL_REDACT_KEYS)


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
        "error": {"type": task.exc_type, "message": _scrubbed(task.exc_message)}
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
        "error": {"type": attempt.exc_type, "message": _scrubbed(attempt.exc_message)}
        if attempt.exc_type or attempt.exc_message
        else None,
        "traceback": _scrubbed(attempt.traceback),
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
    shown = redacted_call(
        task.args,
        task.kwargs,
        task.arg_names,
        settings.TASKTRAIL_REDACT_KEYS,
        name=task.name,
        names_of=known_arg_names(),
    )
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

"""Operator actions over HTTP: POST only, CSRF, a reason every time, checks in the service.

A permission check here would hide refusals from the audit, so views pass every logged-in
request to the service, which refuses and records; the view turns a refusal into 403.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from dashboard.filters import (
    FilterError,
    TaskFilter,
    is_task_id,
    parse_number,
    parse_task_filter,
    text_param,
)
from dashboard.models import OperatorAction
from dashboard.selectors.action_options import bulk_preview, task_action_options
from dashboard.selectors.actions import actions_on_task, audit_log
from dashboard.selectors.tasks import task_detail
from dashboard.services import (
    ActionInputError,
    ActionResult,
    bulk_scope,
    task_run_cancel,
    task_run_retry,
    task_run_terminate,
    task_runs_bulk,
)
from dashboard.services_conflicts import ClearResult, task_conflict_clear
from dashboard.views.access import VIEW_TASKS, viewer_required
from dashboard.views.outcomes import flash_outcome, htmx_status
from dashboard.views.requests import HtmxHttpRequest

SINGLE_ACTIONS = {
    "retry": task_run_retry,
    "cancel": task_run_cancel,
    "terminate": task_run_terminate,
}


# A refusal answered to htmx with this status is swapped in place (base.html's htmx-config swaps
# 403 and 422); a plain form post gets 400 and the page, as before.


def _actions_panel(request: HtmxHttpRequest, task_id: str) -> dict[str, object]:
    """What ``task_actions.html`` shows: the actions offered (or why not), and the history."""
    detail = task_detail(task_id=task_id)
    task = detail.task if detail else None
    return {
        "detail": detail,
        "task": task,
        "options": task_action_options(user=request.user, task=task) if task else {},
        "actions": actions_on_task(task_id=task_id),
    }


def _respond(request: HtmxHttpRequest, task_id: str, result: ActionResult | None,
             error: str | None) -> HttpResponse:  # fmt: skip
    if not request.user.has_perm(VIEW_TASKS):
        return _answer_without_task(request, result, error)
    status = flash_outcome(request, result, error)
    if request.htmx:  # the message appears where the form was
        context = _actions_panel(request, task_id)
        return render(
            request, "dashboard/partials/task_actions.html", context, status=htmx_status(status)
        )
    if status == 403:
        return render(
            request, "403.html", {"message": result.message if result else ""}, status=403
        )
    return redirect(reverse("task-detail", args=[task_id]))


def _answer_without_task(
    request: HtmxHttpRequest, result: ActionResult | None, error: str | None
) -> HttpResponse:
    """The answer to someone who may not read task records: the refusal (or the input error) and
    nothing of the task, neither its actions' history nor its state."""
    message = error or (result.message if result else "")
    status = 403 if result is not None and not result.permitted else 400
    if request.htmx:
        return render(
            request,
            "dashboard/partials/action_answer.html",
            {"message": message},
            status=htmx_status(status),
        )
    template = "403.html" if status == 403 else "dashboard/bad_request.html"
    return render(request, template, {"message": message}, status=status)


@require_POST
@login_required
def task_action(request: HtmxHttpRequest, task_id: str, kind: str) -> HttpResponse:
    action = SINGLE_ACTIONS.get(kind)
    if action is None:
        return HttpResponse("Unknown action.", status=404)
    if not is_task_id(task_id):
        return HttpResponse("No task with this id has been recorded.", status=404)
    reason = request.POST.get("reason", "")
    if kind == "terminate" and request.POST.get("confirm", "").strip() != "TERMINATE":
        return _respond(
            request, task_id, None, "Type TERMINATE to confirm stopping a running task."
        )
    try:
        result = action(user=request.user, task_id=task_id, reason=reason)  # type: ignore[arg-type]
    except ActionInputError as exc:
        return _respond(request, task_id, None, str(exc))
    return _respond(request, task_id, result, None)


@require_POST
@login_required
def task_conflict_clear_view(request: HtmxHttpRequest, task_id: str) -> HttpResponse:
    """The identity-conflict box's "I have checked this task" (admins): a plain form post."""
    if not is_task_id(task_id):
        return HttpResponse("No task with this id has been recorded.", status=404)
    result: ClearResult | None = None
    error: str | None = None
    try:
        result = task_conflict_clear(
            user=request.user,  # type: ignore[arg-type]
            task_id=task_id,
            reason=request.POST.get("reason", ""),
        )
    except ActionInputError as exc:
        error = str(exc)
    if not request.user.has_perm(VIEW_TASKS):
        return _answer_without_task(request, result, error)  # type: ignore[arg-type]
    status = flash_outcome(request, result, error)
    if status == 403:
        return render(
            request, "403.html", {"message": result.message if result else ""}, status=403
        )
    return redirect(reverse("task-detail", args=[task_id]))


def _bulk_inputs(data: QueryDict) -> tuple[str, list[str], TaskFilter | None]:
    kind = data.get("action", "")
    ids = [i for i in data.getlist("task_id") if i][:20_000]
    if not all(is_task_id(i) for i in ids):
        raise ActionInputError("A task id is longer than 255 characters or holds a NUL character.")
    task_filter = None if ids else parse_task_filter(data)
    return kind, ids, task_filter


@require_GET
@viewer_required
def bulk_confirm(request: HtmxHttpRequest) -> HttpResponse:
    """The confirmation step: the exact count, the filter in words, a reason to type."""
    try:
        kind, ids, task_filter = _bulk_inputs(request.GET)
        scope = bulk_scope(user=request.user, kind=kind, task_ids=ids, task_filter=task_filter)  # type: ignore[arg-type]
    except (ActionInputError, FilterError) as exc:
        return render(request, "dashboard/bad_request.html", {"message": str(exc)}, status=400)
    permission = "dashboard.retry_taskrun" if kind == "retry" else "dashboard.cancel_taskrun"
    return render(
        request,
        "dashboard/bulk_confirm.html",
        {
            "kind": kind,
            "scope": scope,
            # Over the cap nothing is acted on: no need to read every row's state.
            "preview": None if scope.over_cap else bulk_preview(kind=kind, task_ids=scope.task_ids),
            "ids": ids,
            "filter": task_filter,
            "allowed": request.user.has_perm(permission),
        },
    )


@require_POST
@login_required
def bulk_action(request: HtmxHttpRequest) -> HttpResponse:
    try:
        kind, ids, task_filter = _bulk_inputs(request.POST)
        result = task_runs_bulk(
            user=request.user,  # type: ignore[arg-type]
            kind=kind,
            reason=request.POST.get("reason", ""),
            task_ids=ids,
            task_filter=task_filter,
            expected_count=parse_number(request.POST.get("expected_count")),
        )
    except (ActionInputError, FilterError) as exc:
        return render(request, "dashboard/bad_request.html", {"message": str(exc)}, status=400)
    if not result.permitted:
        return render(request, "403.html", {"message": result.message}, status=403)
    messages.add_message(
        request, messages.SUCCESS if result.done else messages.WARNING, result.message
    )
    return redirect("audit-action", action_id=result.action.pk)  # every task it touched


@require_GET
@viewer_required
def audit_page(request: HtmxHttpRequest) -> HttpResponse:
    kind = request.GET.get("kind", "")
    if kind and kind not in OperatorAction.Kind.values:
        return render(
            request, "dashboard/bad_request.html", {"message": "Unknown action kind."}, status=400
        )
    try:
        username = text_param(request.GET, "user", limit=150)
    except FilterError as exc:
        return render(request, "dashboard/bad_request.html", {"message": str(exc)}, status=400)
    page = audit_log(
        username=username, kind=kind, before_id=parse_number(request.GET.get("before"))
    )
    return render(
        request,
        "dashboard/audit.html",
        {"page": page, "kind": kind, "username": username, "kinds": OperatorAction.Kind.choices},
    )

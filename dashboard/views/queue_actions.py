"""Pause, resume and purge a queue over HTTP: a confirmation page (GET), then the action (POST,
CSRF, a reason every time; a purge also asks for the queue's name typed out).

As for task actions, the permission is checked in the service, which audits refusals; the view
turns a refusal into 403. A state refusal (already paused, not paused) is flashed on the Queues
page with the audit row's words.
"""

from __future__ import annotations

from typing import Final

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from dashboard.selectors.queue_pauses import purge_preview, queue_pause
from dashboard.services import ActionInputError
from dashboard.services_queues import (
    PAUSE_PERMISSION,
    PURGE_PERMISSION,
    RESUME_PERMISSION,
    clean_queue,
    queue_purge,
    queue_resume,
)
from dashboard.services_queues import (
    queue_pause as pause_service,
)
from dashboard.views.access import viewer_required
from dashboard.views.requests import HtmxHttpRequest

PERMISSIONS: Final = {
    "pause": PAUSE_PERMISSION,
    "resume": RESUME_PERMISSION,
    "purge": PURGE_PERMISSION,
}


def _bad_request(request: HtmxHttpRequest, message: str) -> HttpResponse:
    return render(request, "dashboard/bad_request.html", {"message": message}, status=400)


def _inputs(data: QueryDict) -> tuple[str, str]:
    kind = data.get("action", "")
    if kind not in PERMISSIONS:
        raise ActionInputError("Unknown queue action: pause, resume or purge.")
    queue = data.get("queue", "")
    if "\x00" in queue:
        raise ActionInputError("The queue name contains a NUL character.")
    return kind, clean_queue(queue)


@require_GET
@viewer_required
def queue_confirm(request: HtmxHttpRequest) -> HttpResponse:
    """What the action will do, who paused the queue and why, and the form (for those allowed)."""
    try:
        kind, queue = _inputs(request.GET)
    except ActionInputError as exc:
        return _bad_request(request, str(exc))
    return render(
        request,
        "dashboard/queue_confirm.html",
        {
            "kind": kind,
            "queue": queue,
            "pause": queue_pause(queue),
            "preview": purge_preview(queue) if kind == "purge" else None,
            "allowed": request.user.has_perm(PERMISSIONS[kind]),
        },
    )


@require_POST
@login_required
def queue_action(request: HtmxHttpRequest) -> HttpResponse:
    try:
        kind, queue = _inputs(request.POST)
        reason = request.POST.get("reason", "")
        confirm_name = request.POST.get("confirm_name", "")
        if "\x00" in reason or "\x00" in confirm_name:
            raise ActionInputError("The form contains a NUL character.")
        user: User = request.user  # type: ignore[assignment]  # login_required
        if kind == "pause":
            result = pause_service(user=user, queue=queue, reason=reason)
        elif kind == "resume":
            result = queue_resume(user=user, queue=queue, reason=reason)
        else:
            result = queue_purge(user=user, queue=queue, confirm_name=confirm_name, reason=reason)
    except ActionInputError as exc:
        return _bad_request(request, str(exc))
    if not result.permitted:
        return render(request, "403.html", {"message": result.message}, status=403)
    level = messages.SUCCESS if result.done else messages.WARNING
    messages.add_message(request, level, result.message)
    return redirect("queues")

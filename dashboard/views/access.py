"""Who may see what. Reading task records needs ``dashboard.view_taskrun`` (the viewer role)."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpResponse

VIEW_TASKS = "dashboard.view_taskrun"

View = Callable[..., HttpResponse]


def viewer_required(view: View) -> View:
    """Anonymous: to the login page. Logged in without the permission: 403."""
    return login_required(permission_required(VIEW_TASKS, raise_exception=True)(view))


VIEW_RETENTION = "dashboard.view_retention"


def admin_required(view: View) -> View:
    """Pages about the whole installation (retention): the admin role. Anonymous: to the login
    page; logged in without it: 403."""
    return login_required(permission_required(VIEW_RETENTION, raise_exception=True)(view))

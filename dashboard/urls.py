from urllib.parse import quote, unquote

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path, register_converter

from dashboard.views import actions, alerts, api, live, pages, preferences, queue_actions, results
from dashboard.views import audit as audit_views
from dashboard.views import export as export_views
from dashboard.views import retention as retention_views
from dashboard.views import workers as workers_views


class TaskIdConverter:
    """A task id is whatever the publisher chose (``apply_async(task_id=...)``): any characters,
    "/" and line breaks included, so every recorded task has a page.

    In a link the id is one path segment, every reserved character percent-encoded (``/`` as
    ``%2F``, an id of ``..`` as ``%2E%2E``): ``../queues`` must not make a browser leave the task
    pages. ``reverse()`` encodes the ``%`` once more, and the server decodes the path once, so
    ``to_python`` receives what ``to_url`` made and decodes it; a hand-typed ``/tasks/a/b/`` still
    names the task ``a/b``, and ``/tasks/..%2Fqueues/`` the task ``../queues`` (or a 404).
    """

    regex = "(?s:.+)"

    def to_python(self, value: str) -> str:
        return unquote(value)

    def to_url(self, value: str) -> str:
        encoded = quote(value, safe="")
        return encoded.replace(".", "%2E") if encoded in (".", "..") else encoded


register_converter(TaskIdConverter, "task_id")

urlpatterns = [
    path("", pages.overview_page, name="overview"),
    path("tasks/", pages.task_list_page, name="tasks"),
    path("tasks/stats/", pages.task_stats_page, name="task-stats"),
    path("tasks/export.csv", export_views.tasks_export_csv, name="tasks-export"),
    path("tasks/live/", live.task_live_rows, name="task-live-rows"),
    path("tasks/bulk/", actions.bulk_confirm, name="bulk-confirm"),
    path("tasks/bulk/run", actions.bulk_action, name="bulk-action"),
    path("tasks/<task_id:task_id>/", pages.task_detail_page, name="task-detail"),
    path("tasks/<task_id:task_id>/result", results.task_result_partial, name="task-result"),
    # before task-action, which would read "conflict/clear" as a task id's tail and an action
    path(
        "tasks/<task_id:task_id>/conflict/clear",
        actions.task_conflict_clear_view,
        name="task-conflict-clear",
    ),
    path("tasks/<task_id:task_id>/<str:kind>", actions.task_action, name="task-action"),
    path("audit/", actions.audit_page, name="audit"),
    path("audit/<int:action_id>/", audit_views.audit_action_page, name="audit-action"),
    path("queues/", pages.queues_page, name="queues"),
    path("queues/confirm", queue_actions.queue_confirm, name="queue-confirm"),
    path("queues/act", queue_actions.queue_action, name="queue-action"),
    path("workers/", workers_views.workers_page, name="workers"),
    path("incidents/", alerts.incidents_page, name="incidents"),
    path("preferences/", preferences.preferences_page, name="preferences"),
    path("retention/", retention_views.retention_page, name="retention"),
    path(
        "incidents/<int:incident_id>/acknowledge",
        alerts.incident_acknowledge_view,
        name="incident-acknowledge",
    ),
    path("metrics", alerts.metrics_view, name="metrics"),
    path("api/tasks", api.api_tasks, name="api-tasks"),
    path("api/tasks/<task_id:task_id>", api.api_task, name="api-task"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
]

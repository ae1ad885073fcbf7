"""Read-only admin views of the recorded rows (only the monitor writes them), and of
django-celery-results' rows, every argument, result, error and traceback shown redacted."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django_celery_results.models import GroupResult, TaskResult

from dashboard.models import ApiToken, TaskAttempt, TaskRun
from dashboard.redaction import redacted_call, redacted_repr, scrub_text
from dashboard.selectors.api_tokens import token_state
from dashboard.selectors.arg_names import known_arg_names
from dashboard.services import api_tokens_revoke


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _pre(text: str | None) -> str:
    return format_html("<pre>{}</pre>", text or "—")


def _scrubbed(text: str | None) -> str:
    return _pre(scrub_text(text, settings.TASKTRAIL_REDACT_KEYS) if text else None)


@admin.register(TaskRun)
class TaskRunAdmin(ReadOnlyAdmin):
    list_display = (
        "task_id",
        "name",
        "input_id",
        "state",
        "retries",
        "queue",
        "exc_type",
        "first_seen_at",
        "finished_at",
        "runtime",
        "worker",
    )
    # Not by name or queue: any client can publish under new ones, and the sidebar would list
    # every one (thousands of forged names); an exact name or queue is searched instead.
    list_filter = ("state",)
    # Exact matches only: each has an index, so search stays fast at millions of rows.
    search_fields = ("=task_id", "=input_id", "=trace_id", "=name", "=queue")
    show_full_result_count = False
    date_hierarchy = None
    ordering = ("-first_seen_at", "-id")
    # Raw args/kwargs and error text may hold secrets: only their redacted form is shown.
    exclude = ("state_key", "worker_key", "start_key", "error_key", "args", "kwargs", "exc_message")
    readonly_fields = ("shown_args", "shown_kwargs", "shown_exc_message")

    def _call(self, obj: TaskRun) -> Any:
        return redacted_call(
            obj.args,
            obj.kwargs,
            obj.arg_names,
            settings.TASKTRAIL_REDACT_KEYS,
            name=obj.name,
            names_of=known_arg_names(),
        )

    @admin.display(description="args (redacted)")
    def shown_args(self, obj: TaskRun) -> str:
        return _pre(self._call(obj).args)

    @admin.display(description="kwargs (redacted)")
    def shown_kwargs(self, obj: TaskRun) -> str:
        return _pre(self._call(obj).kwargs)

    @admin.display(description="error message (redacted)")
    def shown_exc_message(self, obj: TaskRun) -> str:
        return _scrubbed(obj.exc_message)


@admin.register(TaskAttempt)
class TaskAttemptAdmin(ReadOnlyAdmin):
    list_display = ("task_id", "attempt", "outcome", "worker", "started_at", "runtime", "exc_type")
    list_filter = ("outcome",)
    search_fields = ("=task_id",)
    show_full_result_count = False
    exclude = ("worker_key", "outcome_rank", "exc_message", "traceback")
    readonly_fields = ("shown_exc_message", "shown_traceback")

    @admin.display(description="error message (redacted)")
    def shown_exc_message(self, obj: TaskAttempt) -> str:
        return _scrubbed(obj.exc_message)

    @admin.display(description="traceback (redacted)")
    def shown_traceback(self, obj: TaskAttempt) -> str:
        return _scrubbed(obj.traceback)


# -- django-celery-results: its own admin shows arguments and results as stored ------------------

for _model in (TaskResult, GroupResult):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)


@admin.register(TaskResult)
class TaskResultAdmin(ReadOnlyAdmin):
    list_display = ("task_id", "periodic_task_name", "task_name", "date_done", "status", "worker")
    list_filter = ("status", "date_done")  # not by name or worker: as many as publishers make
    # Not the arguments: a search would tell whether a guessed secret is among them.
    search_fields = ("=task_id", "task_name", "status")
    show_full_result_count = False
    fields = (
        "task_id",
        "task_name",
        "periodic_task_name",
        "status",
        "worker",
        "content_type",
        "content_encoding",
        "shown_task_args",
        "shown_task_kwargs",
        "shown_result",
        "date_created",
        "date_started",
        "date_done",
        "shown_traceback",
        "shown_meta",
    )
    readonly_fields = fields

    @admin.display(description="task args (redacted)")
    def shown_task_args(self, obj: TaskResult) -> str:
        return _pre(
            redacted_repr(
                obj.task_args,
                settings.TASKTRAIL_REDACT_KEYS,
                known_arg_names(),
                args_of=obj.task_name or "",
            )
        )

    @admin.display(description="task kwargs (redacted)")
    def shown_task_kwargs(self, obj: TaskResult) -> str:
        return _pre(redacted_repr(obj.task_kwargs, settings.TASKTRAIL_REDACT_KEYS))

    @admin.display(description="result (redacted)")
    def shown_result(self, obj: TaskResult) -> str:
        if obj.content_type and obj.content_type != "application/json":
            return _pre(f"(stored as {obj.content_type[:100]}, not shown)")
        return _pre(redacted_repr(obj.result, settings.TASKTRAIL_REDACT_KEYS))

    @admin.display(description="traceback (redacted)")
    def shown_traceback(self, obj: TaskResult) -> str:
        return _scrubbed(obj.traceback)

    @admin.display(description="meta (redacted)")
    def shown_meta(self, obj: TaskResult) -> str:
        return _pre(redacted_repr(obj.meta, settings.TASKTRAIL_REDACT_KEYS))


@admin.register(GroupResult)
class GroupResultAdmin(ReadOnlyAdmin):
    list_display = ("group_id", "date_done")
    list_filter = ("date_done",)
    search_fields = ("=group_id",)
    fields = ("group_id", "content_type", "date_created", "date_done", "shown_result")
    readonly_fields = fields

    @admin.display(description="result (redacted)")
    def shown_result(self, obj: GroupResult) -> str:
        return _pre(redacted_repr(obj.result, settings.TASKTRAIL_REDACT_KEYS))


# -- API tokens: listed and revoked here; created by `manage.py apitoken create` (shown once) ----


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "user", "state", "created_at", "last_used_at", "expires_at")
    list_filter = ("revoked_at", "expires_at")
    search_fields = ("name", "user__username")
    ordering = ("-created_at", "-id")
    fields = ("name", "user", "created_at", "last_used_at", "expires_at", "revoked_at")
    readonly_fields = fields
    actions = ("revoke",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the token is shown once: `manage.py apitoken create`

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoked rows stay, so a refused token's id in the log names its owner

    @admin.display(description="state")
    def state(self, obj: ApiToken) -> str:
        return token_state(obj)

    @admin.action(description="Revoke the selected tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        count = api_tokens_revoke(token_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"Revoked {count} token(s).", messages.SUCCESS)

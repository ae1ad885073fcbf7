"""Read-only admin views of the recorded rows (only the monitor writes them)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from dashboard.models import TaskAttempt, TaskRun
from dashboard.redaction import redacted_call


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


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
    list_filter = ("state", "queue", "name")
    # Exact matches only: each has an index, so search stays fast at millions of rows.
    search_fields = ("=task_id", "=input_id", "=trace_id")
    show_full_result_count = False
    date_hierarchy = None
    ordering = ("-first_seen_at", "-id")
    # Raw args/kwargs may hold secrets: only their redacted form is shown.
    exclude = ("state_key", "worker_key", "start_key", "error_key", "args", "kwargs")
    readonly_fields = ("shown_args", "shown_kwargs")

    @admin.display(description="args (redacted)")
    def shown_args(self, obj: TaskRun) -> str:
        shown = redacted_call(obj.args, obj.kwargs, obj.arg_names, settings.TASKTRAIL_REDACT_KEYS)
        return format_html("<pre>{}</pre>", shown.args or "—")

    @admin.display(description="kwargs (redacted)")
    def shown_kwargs(self, obj: TaskRun) -> str:
        shown = redacted_call(obj.args, obj.kwargs, obj.arg_names, settings.TASKTRAIL_REDACT_KEYS)
        return format_html("<pre>{}</pre>", shown.kwargs or "—")


@admin.register(TaskAttempt)
class TaskAttemptAdmin(ReadOnlyAdmin):
    list_display = ("task_id", "attempt", "outcome", "worker", "started_at", "runtime", "exc_type")
    list_filter = ("outcome",)
    search_fields = ("=task_id",)
    show_full_result_count = False
    exclude = ("worker_key", "outcome_rank")

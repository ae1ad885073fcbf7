"""Parameter names of tasks, for masking the positional arguments of a Celery signature nested in
another task's call (a chord callback, ``map``/``starmap``/``chunks``)."""

from __future__ import annotations

from collections.abc import Sequence

from dashboard.models import RegisteredTask, TaskRun
from dashboard.redaction import NamesOf

MAX_LOOKUPS = 20  # distinct names one display looks up; later ones count as unknown


def known_arg_names() -> NamesOf:
    """A lookup for one display: a task's names as its latest run with recorded names has them
    (``name``, ``-first_seen_at`` index), each name asked once; None when unknown."""
    found: dict[str, Sequence[str] | None] = {}

    def names_of(task_name: str) -> Sequence[str] | None:
        if task_name in found:
            return found[task_name]
        if len(found) >= MAX_LOOKUPS or len(task_name) > 255:
            return None
        stored = (
            TaskRun.objects.filter(name=task_name, arg_names__gt="")
            .order_by("-first_seen_at", "-id")
            .values_list("arg_names", flat=True)
            .first()
        )
        if not stored and _catalog_has_names():
            stored = (
                RegisteredTask.objects.filter(name=task_name, arg_names__gt="")
                .order_by("-last_reported_at")
                .values_list("arg_names", flat=True)
                .first()
            )
        found[task_name] = stored.split(",") if stored else None
        return found[task_name]

    return names_of


def _catalog_has_names() -> bool:
    """Workers that report their tasks' parameter names (newer clients) fill this column."""
    return any(field.name == "arg_names" for field in RegisteredTask._meta.get_fields())

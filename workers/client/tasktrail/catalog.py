"""The task catalog a worker reports when it starts (being written; see install)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Celery


def install(app: Celery, config: Callable[[], Any]) -> None:
    """Report ``app``'s registered tasks from each worker of it. ``config()`` gives the resolved
    client configuration (``.recorder_url``, ``.stream``) or None when recording is off."""

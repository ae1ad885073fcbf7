"""Keep a failed publish from leaving a span open and current.

The Celery instrumentation starts its producer span in ``before_task_publish``, makes it current,
and ends it in ``after_task_publish``. When the publish raises in between (broker down, an argument
that does not serialize), ``after_task_publish`` never fires: the span is never ended, so never
exported, and it stays current, so whatever the web request or task does next nests under a span
no backend will ever receive (upstream has no fix; dd-trace-py#10676 is the same trap elsewhere).

Every publish goes through ``Celery.send_task`` (``Task.apply_async``, Celery's own retries,
chains, groups, ``send_task``), so one wrapper there covers them all: when the call raises, the
dangling producer span is ended with the error recorded, and in every case the context is put back
as it was before the call. Installed only when tracing is on; costs two context-variable writes
per publish.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, Final

from celery import Celery, registry  # the lazy module the instrumentation reads
from opentelemetry import context, trace
from opentelemetry.trace import Span, Status, StatusCode

logger = logging.getLogger("tasktrail.tracing")

_ORIGINAL: Final = "__tasktrail_unguarded__"
# Where the instrumentation keeps (span, activation, token) per (task id, is_publish) on the task
# object (opentelemetry.instrumentation.celery.utils.CTX_KEY). It finds that task by name in
# ``celery.registry.tasks``, the *current* app's registry, whichever app publishes
# (utils.retrieve_task_from_sender): the entry is looked for there, by the same rule.
_CTX_KEY: Final = "__otel_task_span"


def install() -> None:
    """Wrap ``Celery.send_task`` (every app in the process). Idempotent."""
    current = Celery.send_task
    if hasattr(current, _ORIGINAL):
        return
    setattr(Celery, "send_task", _guarded(current))  # noqa: B010  (mypy: assigning to a method)


def uninstall() -> None:
    original = getattr(Celery.send_task, _ORIGINAL, None)
    if original is not None:
        setattr(Celery, "send_task", original)  # noqa: B010


def installed() -> bool:
    return hasattr(Celery.send_task, _ORIGINAL)


def _guarded(send_task: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(send_task)
    def guarded(self: Celery, name: str, *args: Any, **kwargs: Any) -> Any:
        before = trace.get_current_span()
        token = context.attach(context.get_current())
        try:
            return send_task(self, name, *args, **kwargs)
        except BaseException as exc:
            _end_dangling(name, before, exc)
            raise
        finally:
            # Restores the caller's context even if something inside attached and never detached.
            context.detach(token)

    setattr(guarded, _ORIGINAL, send_task)
    return guarded


def _end_dangling(name: str, before: Span, exc: BaseException) -> None:
    """End the span a failed publish left current, recording ``exc`` on it. Never raises."""
    try:
        current = trace.get_current_span()
        if current is before or not current.is_recording():
            return
        entries = getattr(registry.tasks.get(name), _CTX_KEY, None)
        if isinstance(entries, dict):
            for key, entry in list(entries.items()):
                span, activation = entry[0], entry[1]
                if isinstance(key, tuple) and len(key) == 2 and key[1] and span is current:
                    # What after_task_publish would have done, with the error: record it, end the
                    # span, detach; and drop the entry, which would otherwise live on the task.
                    activation.__exit__(type(exc), exc, exc.__traceback__)
                    entries.pop(key, None)
                    return
        # Not the instrumentation's own bookkeeping (another instrumentation?): end it here.
        current.record_exception(exc)
        current.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        current.end()
    except Exception:
        logger.exception("tasktrail tracing: could not end the span of a failed publish")

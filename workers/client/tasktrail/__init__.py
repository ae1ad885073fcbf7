"""tasktrail's client: records a Celery app's tasks for the tasktrail dashboard.

The whole integration on a shop's side is one call, anywhere after ``Celery(...)``::

    import tasktrail
    tasktrail.install(app)

Configuration comes from ``TASKTRAIL_*`` environment variables and the app's broker, read when
first needed (see ``tasktrail.config``); keyword arguments override the environment::

    tasktrail.install(app, recorder_url="redis://…", stream="tasktrail:events")
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from tasktrail import queue_pauses, recorder, revocations
from tasktrail.config import ClientConfig
from tasktrail.recorder import flush

__all__ = ["ClientConfig", "flush", "install"]
__version__ = "0.1.0"

logger = logging.getLogger("tasktrail")


def install(app: Celery, **overrides: Any) -> None:
    """Record ``app``'s tasks, keep cancellations and paused queues across worker restarts,
    trace workers when ``OTEL_*`` asks for it, and report the task catalog. Never raises for a
    bad configuration: it is logged once and recording stays off. Options: ``recorder_url``,
    ``stream``, ``max_args_bytes``, ``secret_keys``; ``release`` (else ``TASKTRAIL_APP_VERSION``)
    names the version of the shop's code its workers' heartbeats report."""
    release = overrides.pop("release", None)
    if not recorder.install(app, **overrides):
        return  # the same app again (nothing to do) or another one (refused, logged)
    app = recorder.installed_app() or app
    revocations.install(app, recorder.config)
    try:
        queue_pauses.install(app, recorder.config)
    except Exception:
        logger.exception("tasktrail: queue pauses could not be installed (ignored)")
    _install_tracing(app)
    from tasktrail import catalog  # filled in on its own; only its install() is used here

    try:
        catalog.install(app, recorder.config)
    except Exception:
        logger.exception("tasktrail: the task catalog could not be installed (ignored)")
    from tasktrail import heartbeat

    try:
        heartbeat.install(app, recorder.config, None if release is None else str(release))
    except Exception:
        logger.exception("tasktrail: worker heartbeats could not be installed (ignored)")


def _install_tracing(app: Celery) -> None:
    from tasktrail.tracing.config import config_from_env

    tracing = config_from_env()
    if not tracing.enabled:
        return
    try:
        import opentelemetry.instrumentation.celery
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError:
        logger.warning(
            "tasktrail: OTEL_* asks for tracing (%s) but OpenTelemetry is not installed: "
            "install the extra, pip install 'tasktrail[otel]'",
            tracing.why,
        )
        return
    from tasktrail.tracing.setup import install_worker_hooks

    install_worker_hooks(default_service_name=_service_name(app))


def _service_name(app: Celery) -> str:
    main = str(getattr(app, "main", None) or "").strip()
    return f"{main}-worker" if main and main != "__main__" else "celery-worker"

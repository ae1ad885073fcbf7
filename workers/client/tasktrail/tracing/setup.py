"""OpenTelemetry set-up for tasktrail's processes: web, Celery worker, monitor.

Call ``setup(role)`` once per process where spans should start: ``dashboard/wsgi.py`` (web, also
``runserver``), ``install_worker_hooks()`` from the Celery app (workers), the monitor command.
``setup`` is idempotent and cheap to call again; it reads ``tasktrail.tracing.config`` and, when
tracing is off, sets nothing up at all (no provider, no exporter thread, no instrumentation).

When on it creates a ``TracerProvider`` (sampler from ``OTEL_TRACES_SAMPLER``, default
parent-based always-on, so workers follow the web's decision), one batch processor per exporter,
instruments Celery (web, worker and monitor all must, or the worker starts a new trace) and, for the
web, Django, and installs ``tasktrail.tracing.publish_guard``.

Workers: the exporter's thread and connections do not survive a fork, so prefork (and solo) pool
processes set up in ``worker_process_init``, after the fork, and thread-based pools (threads,
gevent, eventlet) in ``worker_init``. A pool process leaves with ``os._exit`` (recycled by
``--max-tasks-per-child`` or at shutdown): ``atexit`` does not run there, so spans still queued
would be lost (opentelemetry-python-contrib#4916); ``worker_process_shutdown`` flushes them.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Final

from tasktrail.tracing.config import TracingConfig, config_from_env

logger = logging.getLogger("tasktrail.tracing")

SERVICE_NAMES: Final = {
    "web": "tasktrail-web",
    "worker": "tasktrail-worker",
    "monitor": "tasktrail-monitor",
}
FLUSH_TIMEOUT: Final = 5.0  # seconds a leaving process waits for its last spans to be sent
DROP_WARNING_INTERVAL: Final = 60.0


@dataclass
class _State:
    role: str
    enabled: bool
    provider: Any = None  # opentelemetry.sdk.trace.TracerProvider when enabled
    owns_provider: bool = False  # False when another set-up (opentelemetry-instrument) made it
    instrumented: bool = False
    extra: list[str] = field(default_factory=list)  # what was instrumented, for the log line


_state: _State | None = None
_lock = threading.Lock()


def setup(role: str, *, exporter: Any = None) -> bool:
    """Trace this process as ``role``; returns whether tracing is on. Idempotent.

    ``exporter`` (tests): a span exporter added with a synchronous processor; tracing is then on
    whatever the environment says.
    """
    global _state
    with _lock:
        if _state is not None and (_state.enabled or exporter is None):
            if _state.enabled and not _state.instrumented and exporter is not None:
                _instrument(_state)  # tests: again after uninstrument()
            return _state.enabled
        config = config_from_env()
        if exporter is None and not config.enabled:
            _state = _State(role=role, enabled=False)
            logger.debug("tasktrail tracing off (%s)", config.why)
            return False
        for name in config.unknown_exporters:
            logger.warning("tasktrail tracing: exporter %r is not supported here, ignored", name)
        state = _State(role=role, enabled=True)
        state.provider, state.owns_provider = _provider(role, config, exporter)
        _instrument(state)
        _state = state
        logger.info(
            "tasktrail tracing on for %s (%s): exporters %s; instrumented %s",
            role,
            config.why,
            ",".join(config.exporters) or "none",
            ", ".join(state.extra),
        )
        return True


def enabled() -> bool:
    return _state is not None and _state.enabled


def flush(timeout: float = FLUSH_TIMEOUT) -> None:
    """Send the spans still queued, waiting at most ``timeout`` seconds."""
    _call_provider("force_flush", timeout)


def shutdown(timeout: float = FLUSH_TIMEOUT) -> None:
    """Flush and stop the exporters: the process is about to leave."""
    _call_provider("shutdown", timeout)


def uninstrument() -> None:
    """Undo the instrumentation (tests); the provider stays, as OpenTelemetry allows only one.

    Later ``setup`` calls do not instrument again, except with an ``exporter`` (tests)."""
    with _lock:
        if _state is None or not _state.instrumented:
            return
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        from tasktrail.tracing import publish_guard

        CeleryInstrumentor().uninstrument()
        if _state.role == "web":
            from opentelemetry.instrumentation.django import DjangoInstrumentor

            DjangoInstrumentor().uninstrument()
        publish_guard.uninstall()
        _state.instrumented = False
        _state.extra.clear()


# -- provider ------------------------------------------------------------------------------------


def _provider(role: str, config: TracingConfig, test_exporter: Any) -> tuple[Any, bool]:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    existing = trace.get_tracer_provider()
    if isinstance(existing, TracerProvider):
        # Configured already (opentelemetry-instrument, or the host project): use it as it is.
        provider, owned = existing, False
    else:
        provider, owned = TracerProvider(resource=_resource(role)), True
        for name in config.exporters:
            provider.add_span_processor(_batch_processor(_exporter(name), config.max_queue_size))
        trace.set_tracer_provider(provider)
    if test_exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(test_exporter))
    _count_drops()
    return provider, owned


_default_names: dict[str, str] = {}  # role -> service name, set by the host app (tasktrail.install)


def _resource(role: str) -> Any:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    name = str(resource.attributes.get(SERVICE_NAME) or "")
    if not name or name.startswith("unknown_service"):
        fallback = _default_names.get(role) or SERVICE_NAMES.get(role, role)
        resource = resource.merge(Resource({SERVICE_NAME: fallback}))
    return resource


def _exporter(name: str) -> Any:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    import os

    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcExporter,
            )

            return GrpcExporter()
        except ImportError:
            logger.warning(
                "tasktrail tracing: OTLP over gRPC needs opentelemetry-exporter-otlp-proto-grpc; "
                "using http/protobuf"
            )
    elif protocol != "http/protobuf":
        logger.warning(
            "tasktrail tracing: OTLP protocol %r unsupported, using http/protobuf", protocol
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, timeout, compression from OTEL_EXPORTER_OTLP_*


def _batch_processor(exporter: Any, max_queue_size: int) -> Any:
    import os

    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # Delay and batch size from OTEL_BSP_* (SDK defaults 5 s, 512); the queue is sized here. The SDK
    # refuses a batch larger than the queue: a small OTEL_BSP_MAX_QUEUE_SIZE alone must not stop
    # the process from starting.
    batch = None if os.environ.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") else min(512, max_queue_size)
    return BatchSpanProcessor(exporter, max_queue_size=max_queue_size, max_export_batch_size=batch)


# -- dropped spans -------------------------------------------------------------------------------


class _DropCounter(logging.Filter):
    """Counts the SDK's "Queue full, dropping Span." records and replaces them with a summary.

    The SDK logs one warning per dropped span (thousands in a burst) and exposes no counter; this
    filter turns them into ``dropped_spans()`` and one warning a minute with the running total.
    """

    def __init__(self) -> None:
        super().__init__()
        self.dropped = 0
        self._warned_at = 0.0
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if not (str(record.msg).startswith("Queue full, dropping") and record.args == ("Span",)):
            return True
        with self._lock:
            self.dropped += 1
            now = time.monotonic()
            due = now - self._warned_at >= DROP_WARNING_INTERVAL
            if due:
                self._warned_at = now
        if due:
            logger.warning(
                "tasktrail tracing: %d spans dropped so far: the export queue was full (raise "
                "OTEL_BSP_MAX_QUEUE_SIZE, or check that the collector keeps up)",
                self.dropped,
            )
        return False


_drops = _DropCounter()
_SDK_BATCH_LOGGER: Final = "opentelemetry.sdk._shared_internal"


def _count_drops() -> None:
    sdk_logger = logging.getLogger(_SDK_BATCH_LOGGER)
    if _drops not in sdk_logger.filters:
        sdk_logger.addFilter(_drops)


def dropped_spans() -> int:
    """Spans the batch processors dropped because their queue was full, in this process."""
    return _drops.dropped


# -- instrumentation -----------------------------------------------------------------------------


def _instrument(state: _State) -> None:
    from opentelemetry.instrumentation.celery import CeleryInstrumentor

    from tasktrail.tracing import publish_guard

    CeleryInstrumentor().instrument(tracer_provider=state.provider)
    state.extra.append("celery")
    publish_guard.install()
    if state.role == "web":
        try:
            from opentelemetry.instrumentation.django import DjangoInstrumentor
        except ImportError:
            logger.warning("tasktrail tracing: opentelemetry-instrumentation-django is missing")
        else:
            DjangoInstrumentor().instrument(tracer_provider=state.provider)
            state.extra.append("django")
    state.instrumented = True


def _call_provider(method: str, timeout: float) -> None:
    provider = _state.provider if _state is not None and _state.owns_provider else None
    if provider is None:
        return

    def call() -> None:
        try:
            if method == "force_flush":
                provider.force_flush(int(timeout * 1000))
            else:
                provider.shutdown()
        except Exception:
            logger.exception("tasktrail tracing: %s failed", method)

    # The SDK does not bound an export by the timeout it is given (opentelemetry-python#4568):
    # with the collector unreachable a flush could hold a leaving process for the exporter's own
    # retry budget. A thread bounds the wait; whatever is not sent by then is lost.
    worker = threading.Thread(target=call, name=f"tasktrail-tracing-{method}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        logger.warning("tasktrail tracing: %s did not finish within %.0f s", method, timeout)


# -- Celery worker hooks -------------------------------------------------------------------------

_FORKING_POOLS: Final = ("celery.concurrency.prefork", "celery.concurrency.solo")


def install_worker_hooks(default_service_name: str | None = None) -> None:
    """Connect the worker signals that set tracing up in the right process. Idempotent.

    Safe to call in every process that loads the Celery app: outside a worker these signals never
    fire. ``default_service_name``: the workers' service name when ``OTEL_SERVICE_NAME`` (or
    ``service.name`` in ``OTEL_RESOURCE_ATTRIBUTES``) does not give one.
    """
    from celery import signals

    if default_service_name:
        _default_names["worker"] = default_service_name

    hooks = (
        (signals.worker_init, _on_worker_init),
        (signals.worker_process_init, _on_worker_process_init),
        (signals.worker_process_shutdown, _on_worker_leaving),
        (signals.worker_shutdown, _on_worker_leaving),
    )
    for signal, receiver in hooks:
        signal.connect(receiver, weak=False, dispatch_uid=f"tasktrail.tracing.{receiver.__name__}")


def _pool_module(worker: Any) -> str:
    pool_cls = getattr(worker, "pool_cls", None)
    try:
        from celery.concurrency import get_implementation

        resolved = get_implementation(pool_cls) if pool_cls is not None else None
    except Exception:
        resolved = pool_cls
    return str(getattr(resolved, "__module__", "") or "")


def _on_worker_init(sender: Any = None, **_: Any) -> None:
    # In the worker's main process, before any fork: only pools that do not fork set up here.
    if _pool_module(sender) in _FORKING_POOLS:
        return
    _safely(setup, "worker")


def _on_worker_process_init(**_: Any) -> None:
    _safely(setup, "worker")  # in the pool process, after the fork (solo: the main process)


def _on_worker_leaving(**_: Any) -> None:
    if enabled():
        _safely(shutdown)


def _safely(function: Any, *args: Any) -> None:
    # Tracing must never stop a worker from starting or leaving.
    try:
        function(*args)
    except Exception:
        logger.exception("tasktrail tracing: %s failed (tracing may be off)", function.__name__)

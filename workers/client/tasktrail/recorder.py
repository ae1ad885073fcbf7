"""Celery signal receivers that turn each task event into one small event on a Redis stream.

Installed by ``tasktrail.install(app)``, anywhere after ``Celery(...)``: the receivers are connected
at once, the configuration (``tasktrail.config``) is read when first needed: the first publish,
``worker_init`` or the first task signal. A configuration that cannot be used is logged once, as an
ERROR of the ``tasktrail`` logger with credentials masked, and recording stays off in that process;
nothing is raised into the shop's code.

Rules the receivers keep: they never raise into Celery (a failure is logged and counted), never
touch a database, and never wait on the network (events go to a per-process buffer, see
``tasktrail.stream_writer``). Imports no Django.

Headers the recorder adds to each published message: ``tasktrail_published`` (publish time, Unix
seconds: the age of the oldest waiting message is read from it) and ``tasktrail_input_id``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

from celery import Celery, signals

from tasktrail.config import ClientConfig, ConfigError, resolve
from tasktrail.events import Event, Kind, event_task_id, make_event
from tasktrail.stream_writer import StreamWriter
from tasktrail.task_inputs import InputRule, extract_input_id, keep_args, resolve_rule
from tasktrail.tracing.context import run_span_id

logger = logging.getLogger("tasktrail.recorder")
config_logger = logging.getLogger("tasktrail")  # the one line that says recording is off

PUBLISHED_HEADER = "tasktrail_published"
INPUT_ID_HEADER = "tasktrail_input_id"
RETRY_OF_HEADER = "tasktrail_retry_of"
FLUSH_INTERVAL = 0.1  # seconds between two writes of a process's buffered events


@dataclass
class Recorder:
    app: Celery
    writer: StreamWriter
    config: ClientConfig
    receiver_errors: int = 0
    _rules: dict[str, InputRule] = field(default_factory=dict)
    _started: dict[str, float] = field(default_factory=dict)  # task id -> start, per process

    @property
    def max_args_bytes(self) -> int:
        return self.config.max_args_bytes

    @property
    def secret_keys(self) -> tuple[str, ...]:  # never the default input id
        return self.config.secret_keys

    def rule_for(self, name: str) -> InputRule:
        rule = self._rules.get(name)
        if rule is None:
            rule = self._rules[name] = resolve_rule(self.app.tasks.get(name), self.secret_keys)
        return rule

    def emit(self, kind: Kind, task_id: Any, ts: float, **fields: Any) -> None:
        # Every value is checked against the event schema here (a header may hold anything):
        # what does not fit is dropped or cleaned and counted, so the writer can always pack it.
        checked_id = event_task_id(task_id)
        if checked_id is None:
            return
        event: Event = make_event(kind, checked_id, ts, **fields)
        self.writer.emit(event)


@dataclass
class _Installation:
    """The one app this process records, and its configuration once read."""

    app: Celery
    overrides: dict[str, Any] = field(repr=False)  # may hold a recorder_url with its password
    resolved: bool = False
    recorder: Recorder | None = None  # None once resolved: recording is off (logged)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def active(self) -> Recorder | None:
        if not self.resolved:
            with self.lock:
                if not self.resolved:
                    self.recorder = _build(self.app, self.overrides)
                    self.resolved = True
        return self.recorder


_installation: _Installation | None = None
_install_lock = threading.Lock()


def _fresh_locks() -> None:
    # A fork while another thread held a lock would leave it held forever in the child.
    global _install_lock
    _install_lock = threading.Lock()
    if _installation is not None:
        _installation.lock = threading.Lock()


os.register_at_fork(after_in_child=_fresh_locks)


def app_label(app: Any) -> str:
    return f"{getattr(app, 'main', None) or '__main__'!r} (at {id(app):#x})"


def install(app: Celery, **overrides: Any) -> bool:
    """Record every task of ``app``. Returns True when this call installed it.

    Reads no configuration now (see the module's doc). ``app`` again: nothing changes. Another app
    while one is installed: refused with an ERROR log line, as one process records one app.
    """
    global _installation
    app = getattr(app, "_get_current_object", lambda: app)()  # celery.current_app is a proxy
    with _install_lock:
        installed = _installation
        if installed is not None:
            if installed.app is not app:
                config_logger.error(
                    "tasktrail is already installed for Celery app %s; install() for app %s is "
                    "ignored: one process records one app",
                    app_label(installed.app),
                    app_label(app),
                )
            elif overrides and overrides != installed.overrides:
                logger.warning("tasktrail: installed again with other options; the first ones stay")
            return False
        _installation = _Installation(app=app, overrides=dict(overrides))
    _connect()
    return True


def _build(app: Celery, overrides: Mapping[str, Any]) -> Recorder | None:
    try:
        config = resolve(app, overrides)
        writer = StreamWriter(
            config.recorder_url,
            config.stream,
            flush_interval=FLUSH_INTERVAL,
            max_entries=config.stream_max_entries,
            signing_key=config.event_keys[0] if config.event_keys else None,
        )
    except ConfigError as exc:
        config_logger.error("tasktrail: recording is off for Celery app %s: %s", app.main, exc)
        return None
    except Exception as exc:  # its message could hold a URL: the class only
        config_logger.error(
            "tasktrail: recording is off for Celery app %s: configuration failed (%s)",
            app.main,
            type(exc).__name__,
        )
        return None
    logger.debug("tasktrail recorder on: %r", config)
    return Recorder(app=app, writer=writer, config=config)


def installed_app() -> Celery | None:
    installed = _installation
    return installed.app if installed is not None else None


def current() -> Recorder | None:
    """The recorder of this process (reading the configuration now if not read yet), or None."""
    installed = _installation
    return installed.active() if installed is not None else None


def config() -> ClientConfig | None:
    """The resolved configuration, or None when recording is off (not installed, or unusable)."""
    recorder = current()
    return recorder.config if recorder is not None else None


def flush() -> None:
    """Write buffered events now (tests, scripts about to exit)."""
    installed = _installation
    if installed is not None and installed.recorder is not None:
        installed.recorder.writer.flush()


def _guarded(receiver: Callable[..., None]) -> Callable[..., None]:
    @wraps(receiver)
    def run(*args: Any, **kwargs: Any) -> None:
        recorder = None
        try:
            recorder = current()
            if recorder is not None:
                receiver(recorder, *args, **kwargs)
        except Exception:
            if recorder is not None:
                recorder.receiver_errors += 1
            logger.exception("tasktrail recorder: %s failed (ignored)", receiver.__name__)

    return run


# -- helpers ------------------------------------------------------------------------------------


def _timestamp(value: Any) -> float | None:
    """ETA / expires arrive as ISO strings in message headers, datetimes on requests."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            # Python 3.10 reads only what isoformat() writes: no "Z" suffix.
            text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
            value = dt.datetime.fromisoformat(text)
        except ValueError:
            return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.timestamp()
    return None


def _error_type(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    return (
        cls.__qualname__ if module in ("builtins", "__main__") else f"{module}.{cls.__qualname__}"
    )


def _error_message(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # a task's exception can fail even to print itself
        return f"<unprintable {type(exc).__name__}>"


def _request_value(request: Any, name: str) -> Any:
    value = getattr(request, name, None)
    if value is None and isinstance(request, Mapping):
        value = request.get(name)
    return value


_EXTRACT: Any = object()  # _args_fields: the input id is to be read from the arguments


def _args_fields(
    recorder: Recorder, name: str, args: Any, kwargs: Any, input_id: Any = _EXTRACT
) -> dict[str, Any]:
    """The event's argument fields; ``input_id`` given when already known (the publish header)."""
    rule = recorder.rule_for(name)
    kept = keep_args(args, kwargs, recorder.max_args_bytes)
    if input_id is _EXTRACT:
        input_id = extract_input_id(rule, args or (), kwargs or {})
    return {
        "input_id": input_id,
        "args": kept.args,
        "kwargs": kept.kwargs,
        "args_dropped": kept.dropped,
        "arg_names": ",".join(rule.arg_names) or None,
    }


# -- receivers ------------------------------------------------------------------------------------


@_guarded
def on_before_publish(
    recorder: Recorder, sender: Any = None, body: Any = None, headers: Any = None, **_: Any
) -> None:
    if not isinstance(headers, dict) or "id" not in headers:
        return  # task message protocol 1: no headers to stamp
    headers[PUBLISHED_HEADER] = time.time()
    if INPUT_ID_HEADER not in headers and isinstance(body, tuple | list) and len(body) >= 2:
        input_id = extract_input_id(recorder.rule_for(str(sender)), body[0] or (), body[1] or {})
        if input_id is not None:
            headers[INPUT_ID_HEADER] = input_id


@_guarded
def on_after_publish(
    recorder: Recorder,
    sender: Any = None,
    body: Any = None,
    headers: Any = None,
    exchange: Any = None,
    routing_key: Any = None,
    **_: Any,
) -> None:
    # Emitted after publishing, when every before_task_publish receiver (the tracing one included)
    # has finished writing headers; a publish that raised emits nothing, as nothing was sent.
    if not isinstance(headers, dict) or PUBLISHED_HEADER not in headers:
        return
    name = str(headers.get("task") or sender)
    args, kwargs = (
        (body[0], body[1]) if isinstance(body, tuple | list) and len(body) >= 2 else ((), {})
    )
    published = headers[PUBLISHED_HEADER]
    # on_before_publish put the input id in the headers already: not extracted a second time
    fields = _args_fields(recorder, name, args, kwargs, input_id=headers.get(INPUT_ID_HEADER))
    recorder.emit(
        "published",
        headers.get("id"),
        published,
        name=name,
        queue=str(routing_key or exchange or "") or None,
        retries=headers.get("retries") or 0,
        eta=_timestamp(headers.get("eta")),
        expires=_timestamp(headers.get("expires")),
        parent_id=headers.get("parent_id"),
        root_id=headers.get("root_id"),
        group_id=headers.get("group"),
        retry_of=headers.get(RETRY_OF_HEADER),
        traceparent=headers.get("traceparent"),
        published_at=published,
        **fields,
    )


@_guarded
def on_received(recorder: Recorder, sender: Any = None, request: Any = None, **_: Any) -> None:
    if request is None:
        return
    info = getattr(request, "request_dict", None) or {}
    eta = _timestamp(info.get("eta"))
    if PUBLISHED_HEADER in info:
        # The publisher's event already says everything else about the message.
        recorder.emit(
            "received",
            request.id,
            time.time(),
            retries=info.get("retries") or 0,
            hostname=request.hostname,
            eta=eta,
        )
        return
    # Published by a process without the recorder: take what the worker knows.
    delivery = getattr(request, "delivery_info", None) or {}
    fields = _args_fields(recorder, request.name, request.args, request.kwargs)
    recorder.emit(
        "received",
        request.id,
        time.time(),
        name=request.name,
        queue=delivery.get("routing_key"),
        retries=info.get("retries") or 0,
        hostname=request.hostname,
        eta=eta,
        expires=_timestamp(info.get("expires")),
        parent_id=info.get("parent_id"),
        root_id=info.get("root_id"),
        group_id=info.get("group"),
        traceparent=info.get("traceparent"),
        **fields,
    )


@_guarded
def on_prerun(
    recorder: Recorder, sender: Any = None, task_id: Any = None, task: Any = None, **_: Any
) -> None:
    request = task.request if task is not None else None
    if request is None or getattr(request, "is_eager", False):
        return
    now = time.time()
    recorder._started[task_id] = now
    published = _request_value(request, PUBLISHED_HEADER)
    eta = _timestamp(_request_value(request, "eta"))
    ready = max(x for x in (published, eta, 0.0) if x is not None)
    recorder.emit(
        "started",
        task_id,
        now,
        name=task.name,
        retries=request.retries or 0,
        hostname=request.hostname,
        pid=os.getpid(),
        traceparent=_request_value(request, "traceparent"),
        queue_wait=max(0.0, now - ready) if ready else None,
    )


def _finish_fields(recorder: Recorder, sender: Any, task_id: str, now: float) -> dict[str, Any]:
    request = getattr(sender, "request", None)
    own = request is not None and getattr(request, "id", None) == task_id
    started = recorder._started.pop(task_id, None)
    return {
        "name": getattr(sender, "name", None),
        # Failures reported by the main process (time limit, lost worker) may lack the attempt.
        "retries": (getattr(request, "retries", 0) or 0) if own else None,
        "hostname": getattr(request, "hostname", None) if own else None,
        "pid": os.getpid(),
        "runtime": (now - started) if started is not None else None,
        # The attempt's run span (None when tracing is off or the trace is not sampled).
        "span_id": run_span_id(sender, task_id) if own else None,
    }


@_guarded
def on_success(recorder: Recorder, sender: Any = None, **_: Any) -> None:
    request = getattr(sender, "request", None)
    task_id = getattr(request, "id", None)
    if not task_id or getattr(request, "is_eager", False):
        return
    now = time.time()
    recorder.emit("succeeded", task_id, now, **_finish_fields(recorder, sender, task_id, now))


def _error_fields(exception: Any, einfo: Any) -> dict[str, Any]:
    is_exception = isinstance(exception, BaseException)
    return {
        "exc_type": _error_type(exception) if is_exception else None,
        "exc_message": _error_message(exception) if is_exception else None,
        "traceback": str(getattr(einfo, "traceback", "") or "") or None,
    }


@_guarded
def on_failure(
    recorder: Recorder,
    sender: Any = None,
    task_id: Any = None,
    exception: Any = None,
    einfo: Any = None,
    **_: Any,
) -> None:
    # Also connected to task_internal_error: Celery's own tracing failed around the task, which
    # then may not report a failure itself.
    if getattr(getattr(sender, "request", None), "is_eager", False):
        return
    now = time.time()
    recorder.emit(
        "failed",
        task_id,
        now,
        **_error_fields(exception, einfo),
        **_finish_fields(recorder, sender, str(task_id), now),
    )


@_guarded
def on_retry(
    recorder: Recorder,
    sender: Any = None,
    request: Any = None,
    reason: Any = None,
    einfo: Any = None,
    **_: Any,
) -> None:
    task_id = getattr(request, "id", None)
    if not task_id or getattr(request, "is_eager", False):
        return
    exc = getattr(reason, "exc", None) or reason
    now = time.time()
    started = recorder._started.pop(task_id, None)
    recorder.emit(
        "retried",
        task_id,
        now,
        name=getattr(sender, "name", None),
        retries=getattr(request, "retries", 0) or 0,
        hostname=getattr(request, "hostname", None),
        pid=os.getpid(),
        runtime=(now - started) if started is not None else None,
        span_id=run_span_id(sender, task_id),
        **_error_fields(exc, einfo),
    )


@_guarded
def on_revoked(
    recorder: Recorder,
    sender: Any = None,
    request: Any = None,
    terminated: Any = None,
    signum: Any = None,
    expired: Any = None,
    **_: Any,
) -> None:
    task_id = _request_value(request, "id")
    if expired:
        message = "expired before it could run"
    elif terminated:
        message = f"terminated (signal {signum})" if signum else "terminated"
    else:
        message = "revoked before it started"
    recorder.emit(
        "revoked",
        task_id,
        time.time(),
        name=getattr(sender, "name", None),
        retries=_request_value(request, "retries") or 0,
        hostname=_request_value(request, "hostname"),
        terminated=bool(terminated),
        expired=bool(expired),
        exc_message=message,
    )


def _message_ids(message: Any) -> tuple[Any, Any]:
    headers = getattr(message, "headers", None) or {}
    return headers.get("id"), headers.get("task")


@_guarded
def on_rejected(
    recorder: Recorder, sender: Any = None, message: Any = None, exc: Any = None, **_: Any
) -> None:
    task_id, name = _message_ids(message)
    recorder.emit(
        "rejected",
        task_id,
        time.time(),
        name=name,
        hostname=getattr(sender, "hostname", None),
        exc_type=_error_type(exc) if isinstance(exc, BaseException) else None,
        exc_message=_error_message(exc) if isinstance(exc, BaseException) else "message rejected",
    )


@_guarded
def on_unknown(
    recorder: Recorder,
    sender: Any = None,
    name: Any = None,
    id: Any = None,
    message: Any = None,
    **_: Any,
) -> None:
    headers = getattr(message, "headers", None) or {}
    recorder.emit(
        "unknown",
        id,
        time.time(),
        name=str(name) if name is not None else None,
        hostname=getattr(sender, "hostname", None),
        retries=headers.get("retries") or 0,
        exc_type="NotRegistered",
        exc_message=f"no task named {name!r} is registered on this worker",
    )


def _flush_on_shutdown(**_: Any) -> None:
    # A pool child exits with os._exit: atexit does not run there, this signal does.
    installed = _installation
    if installed is not None and installed.recorder is not None:
        try:
            installed.recorder.writer.close()
        except Exception:
            logger.exception("tasktrail recorder: final flush failed")


def _on_worker_init(**_: Any) -> None:
    # Read the configuration as the worker starts: an unusable one is logged now, not at the
    # first task, and pool processes inherit it already read.
    try:
        current()
    except Exception:
        logger.exception("tasktrail recorder: reading the configuration failed (ignored)")


_RECEIVERS: list[tuple[Any, Callable[..., None]]] = [
    (signals.before_task_publish, on_before_publish),
    (signals.after_task_publish, on_after_publish),
    (signals.task_received, on_received),
    (signals.task_prerun, on_prerun),
    (signals.task_success, on_success),
    (signals.task_failure, on_failure),
    (signals.task_retry, on_retry),
    (signals.task_internal_error, on_failure),
    (signals.task_revoked, on_revoked),
    (signals.task_rejected, on_rejected),
    (signals.task_unknown, on_unknown),
    (signals.worker_init, _on_worker_init),
    (signals.worker_process_shutdown, _flush_on_shutdown),
    (signals.worker_shutdown, _flush_on_shutdown),
]
_connected = False


def _connect() -> None:
    global _connected
    if _connected:
        return
    import atexit

    for signal, receiver in _RECEIVERS:
        signal.connect(receiver, weak=False, dispatch_uid=f"tasktrail.{receiver.__name__}")
    atexit.register(_flush_on_shutdown)
    _connected = True

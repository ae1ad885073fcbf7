"""The task catalog: which task names a worker has registered, and what an operator's action on
them needs to know (queue, opt-out from retries or explicit opt-in, max_retries, time limits, the
names of its positional parameters).

Each worker's main process reports its catalog when it is ready (``worker_ready``) and again every
ten minutes (``TASKTRAIL_CATALOG_INTERVAL`` seconds, if set) from a daemon thread, so a worker that
runs for weeks stays "recent". A report is one entry of the event stream under its own field
(``c``): the dashboard learns the shop's tasks without importing the shop's code. Sending never
raises into the worker: a failure is logged and the next report tries again.

Bounds: at most ``MAX_TASKS`` tasks per report (the rest are left out and counted in
``truncated``); names, queues, the app name and the hostname at most ``MAX_TEXT`` characters
(longer task names are left out, as they could not match a recorded name; other text is cut); at
most ``MAX_ARG_NAMES`` parameter names per task, each a Python identifier (none listed when the
task has more, or when its signature cannot be read).

The monitor decodes with ``decode_catalog``, which treats the entry as untrusted input. Imports no
Django.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeGuard

import msgpack
from celery import Celery, signals

from tasktrail.signing import signed

logger = logging.getLogger("tasktrail.catalog")

SCHEMA_VERSION: Final = 1
ENTRY_FIELD: Final = b"c"
MAX_TASKS: Final = 5000
MAX_TEXT: Final = 255
# 5,000 tasks of 255-character names and queues take about 2.7 MB; anything larger is not ours.
MAX_ENTRY_BYTES: Final = 4 * 1024 * 1024
REPORT_INTERVAL: Final = 600.0  # seconds; each report waits 90-110 % of it, so workers spread out
ENV_INTERVAL: Final = "TASKTRAIL_CATALOG_INTERVAL"
RETRYABLE_ATTRIBUTE: Final = "tasktrail_retryable"
MAX_ARG_NAMES: Final = 64
# Parameter names of all tasks together, in characters: past it the rest are not listed, so a
# report stays within MAX_ENTRY_BYTES however long the shop's parameter names are.
ARG_NAMES_BUDGET: Final = 512 * 1024
_MAX_INT: Final = 2**31
_MAX_SECONDS: Final = 10.0**9  # a time limit beyond ~31 years is not one
_MIN_TS: Final = 946_684_800.0  # 2000-01-01
_MAX_TS: Final = 32_503_680_000.0  # year 3000


class Target(Protocol):
    """Where reports go: the client's resolved configuration has these."""

    @property
    def recorder_url(self) -> str: ...

    @property
    def stream(self) -> str: ...


# -- what a worker knows ------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskInfo:
    name: str
    queue: str | None = None
    retryable: bool = True
    max_retries: int | None = None  # None: no limit
    time_limit: float | None = None
    soft_time_limit: float | None = None
    # The task sets tasktrail_retryable = True itself (not merely leaves it out): what a
    # dashboard in TASKTRAIL_RETRY=declared mode asks for. False from clients that predate it.
    declared_retryable: bool = False
    # Its positional parameters, as its code names them (None: not known): the dashboard labels
    # and masks a retry's arguments by these, never by names an event claims.
    arg_names: tuple[str, ...] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "queue": self.queue,
            "retryable": self.retryable,
            "declared_retryable": self.declared_retryable,
            "arg_names": None if self.arg_names is None else list(self.arg_names),
            "max_retries": self.max_retries,
            "time_limit": self.time_limit,
            "soft_time_limit": self.soft_time_limit,
        }


@dataclass(frozen=True)
class Report:
    hostname: str
    app: str
    ts: float
    tasks: tuple[TaskInfo, ...]
    pid: int | None = None
    truncated: int = 0  # tasks the worker has but left out (over MAX_TASKS or unusable names)


def describe(app: Celery, limit: int = MAX_TASKS) -> tuple[list[TaskInfo], int]:
    """The app's registered tasks (sorted by name, at most ``limit``) and how many were left out.
    A task whose attributes cannot be read is reported with defaults, never dropped for it."""
    names = sorted(n for n in list(app.tasks.keys()) if isinstance(n, str))
    usable = [n for n in names if 0 < len(n) <= MAX_TEXT and "\x00" not in n]
    left_out = len(names) - len(usable) + max(0, len(usable) - limit)
    default_queue = _text(app.conf.task_default_queue)
    infos: list[TaskInfo] = []
    budget = ARG_NAMES_BUDGET
    for name in usable[:limit]:
        try:
            task = app.tasks[name]
            arg_names = _arg_names(task)
            if arg_names is not None:
                budget -= sum(len(n) + 4 for n in arg_names)  # msgpack adds a few bytes each
                arg_names = arg_names if budget >= 0 else None
            infos.append(
                TaskInfo(
                    name=name,
                    queue=_queue_of(app, task, name) or default_queue,
                    retryable=getattr(task, RETRYABLE_ATTRIBUTE, True) is not False,
                    declared_retryable=getattr(task, RETRYABLE_ATTRIBUTE, None) is True,
                    arg_names=arg_names,
                    max_retries=_int(getattr(task, "max_retries", None)),
                    time_limit=_seconds(_first(task, "time_limit", app.conf.task_time_limit)),
                    soft_time_limit=_seconds(
                        _first(task, "soft_time_limit", app.conf.task_soft_time_limit)
                    ),
                )
            )
        except Exception:
            logger.warning("tasktrail catalog: cannot describe %s", name, exc_info=True)
            infos.append(TaskInfo(name=name, queue=default_queue))
    return infos, left_out


def _queue_of(app: Celery, task: Any, name: str) -> str | None:
    """The task's own ``queue``, else where ``task_routes`` sends it (routes that need the call's
    arguments see none; one that fails is skipped)."""
    own = getattr(task, "queue", None)
    if own:
        return _text(getattr(own, "name", own))
    try:
        options = app.amqp.router.route({}, name, (), {}, task)
    except Exception:
        return None
    queue = options.get("queue") if isinstance(options, Mapping) else None
    return _text(getattr(queue, "name", queue)) if queue else None


def _arg_names(task: Any) -> tuple[str, ...] | None:
    """The task's positional parameter names; None when unreadable or too many to list."""
    run = getattr(task, "run", None)
    if run is None:
        return None
    try:
        params = inspect.signature(run).parameters.values()
    except (TypeError, ValueError):
        return None
    # ``task.run`` of a bind=True task is a bound method, so ``self`` is already left out.
    names = tuple(p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
    fits = len(names) <= MAX_ARG_NAMES and all(len(n) <= MAX_TEXT for n in names)
    return names if fits else None


def _first(task: Any, attribute: str, default: Any) -> Any:
    value = getattr(task, attribute, None)
    return default if value is None else value


def _text(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return value.replace("\x00", "\ufffd")[:MAX_TEXT]


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if -_MAX_INT <= value < _MAX_INT else None


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) and 0 <= value < _MAX_SECONDS else None


# -- the stream entry -----------------------------------------------------------------------------


def encode_catalog(report: Report) -> dict[bytes, bytes]:
    """The fields of one stream entry carrying ``report``."""
    body = {
        "v": SCHEMA_VERSION,
        "hostname": report.hostname,
        "app": report.app,
        "ts": report.ts,
        "pid": report.pid,
        "truncated": report.truncated,
        "tasks": [t.as_dict() for t in report.tasks],
    }
    return {ENTRY_FIELD: msgpack.packb(body, use_bin_type=True)}


def is_catalog(fields: Mapping[bytes, bytes]) -> bool:
    return ENTRY_FIELD in fields


class CatalogError(ValueError):
    """Why an entry is not a usable catalog; ``raw`` is what to keep for a person to look at."""

    def __init__(self, reason: str, raw: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw


@dataclass(frozen=True)
class Decoded:
    report: Report
    invalid: list[tuple[str, Any]] = field(default_factory=list)  # (why, item) of tasks left out


def decode_catalog(fields: Mapping[bytes, bytes]) -> Decoded:
    """Unpack and validate a catalog entry. Raises ``CatalogError`` when the entry as a whole is
    unusable; invalid task items are left out and listed in ``invalid``. Never raises otherwise."""
    packed = fields.get(ENTRY_FIELD)
    if not isinstance(packed, bytes):
        raise CatalogError("catalog entry has no 'c' field", dict(fields))
    if len(packed) > MAX_ENTRY_BYTES:
        raise CatalogError(f"catalog entry larger than {MAX_ENTRY_BYTES} bytes", packed[:1024])
    containers = _Containers()  # so 4 MiB of empty maps is refused, never built
    try:
        body = msgpack.unpackb(
            packed,
            raw=False,
            strict_map_key=True,
            max_array_len=2 * MAX_TASKS,
            max_map_len=64,
            object_hook=containers,
            list_hook=containers,
        )
    except Exception as exc:  # any bytes may arrive here, nested as deep as they like
        raise CatalogError(f"catalog not msgpack: {type(exc).__name__}", packed[:4096]) from None
    if not isinstance(body, dict):
        raise CatalogError(f"catalog is a {type(body).__name__}, not a map", packed[:4096])
    raw = packed[:4096]
    version = body.get("v")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise CatalogError("catalog has an unsupported schema version", raw)
    hostname = body.get("hostname")
    if not isinstance(hostname, str) or not hostname.strip() or len(hostname) > MAX_TEXT:
        raise CatalogError("catalog hostname missing or not a string of 1-255 characters", raw)
    app = body.get("app", "")
    if app is None:
        app = ""
    if not isinstance(app, str) or len(app) > MAX_TEXT:
        raise CatalogError("catalog app name is not a string of at most 255 characters", raw)
    ts = body.get("ts")
    if not _is_number(ts) or not _MIN_TS <= ts < _MAX_TS:
        raise CatalogError("catalog ts is not a plausible Unix time", raw)
    pid = body.get("pid")
    if pid is not None and _int(pid) is None:
        raise CatalogError("catalog pid is not an integer", raw)
    truncated = _int(body.get("truncated", 0))
    if truncated is None or truncated < 0:
        raise CatalogError("catalog truncated is not a count", raw)
    items = body.get("tasks")
    if not isinstance(items, list):
        raise CatalogError("catalog tasks is not a list", raw)
    if len(items) > MAX_TASKS:
        raise CatalogError(f"catalog lists {len(items)} tasks, more than {MAX_TASKS}", raw)
    tasks: dict[str, TaskInfo] = {}
    invalid: list[tuple[str, Any]] = []
    for item in items:
        info = _task_info(item)
        if isinstance(info, str):
            invalid.append((info, item))
        else:
            tasks[info.name] = info  # a name listed twice: the last one counts
    report = Report(
        hostname=_clean(hostname),
        app=_clean(app),
        ts=float(ts),
        tasks=tuple(tasks.values()),
        pid=pid,
        truncated=truncated + len(invalid),
    )
    return Decoded(report, invalid)


class _Containers:
    """Counts the maps or lists a catalog builds: the body, its task list and each task with its
    parameter names. Past that number it is not a catalog, and unpacking stops at once."""

    def __init__(self) -> None:
        self.left = 2 * MAX_TASKS + 8

    def __call__(self, value: Any) -> Any:
        self.left -= 1
        if self.left < 0:
            raise ValueError("more maps and lists than a catalog holds")
        return value


def _task_info(item: object) -> TaskInfo | str:
    """A validated task, or why the item is not one."""
    if not isinstance(item, dict):
        return f"catalog task is a {type(item).__name__}, not a map"
    name = item.get("name")
    if not isinstance(name, str) or not name or len(name) > MAX_TEXT:
        return "catalog task name missing or not a string of 1-255 characters"
    if "\x00" in name:  # a name picks what runs: never altered to fit
        return "catalog task name contains a NUL character"
    queue = item.get("queue")
    if queue is not None and (not isinstance(queue, str) or len(queue) > MAX_TEXT):
        return f"catalog task {name!r}: queue is not a string of at most 255 characters"
    retryable = item.get("retryable", True)
    if not isinstance(retryable, bool):
        return f"catalog task {name!r}: retryable is not a boolean"
    declared = item.get("declared_retryable", False)
    if not isinstance(declared, bool):
        return f"catalog task {name!r}: declared_retryable is not a boolean"
    arg_names = item.get("arg_names")
    if arg_names is not None and not _are_arg_names(arg_names):
        return f"catalog task {name!r}: arg_names is not a list of up to {MAX_ARG_NAMES} names"
    max_retries = item.get("max_retries")
    if max_retries is not None and _int(max_retries) is None:
        return f"catalog task {name!r}: max_retries is not an integer"
    limits: dict[str, float | None] = {}
    for key in ("time_limit", "soft_time_limit"):
        value = item.get(key)
        if value is not None and _seconds(value) is None:
            return f"catalog task {name!r}: {key} is not a number of seconds"
        limits[key] = None if value is None else float(value)
    return TaskInfo(
        name=name,
        queue=(_clean(queue) or None) if queue is not None else None,
        retryable=retryable,
        max_retries=max_retries,
        time_limit=limits["time_limit"],
        soft_time_limit=limits["soft_time_limit"],
        # opting out wins: a task both "not retryable" and "declared retryable" is not retried
        declared_retryable=declared and retryable,
        arg_names=None if arg_names is None else tuple(arg_names),
    )


def _are_arg_names(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) <= MAX_ARG_NAMES
        and all(isinstance(n, str) and n.isidentifier() and len(n) <= MAX_TEXT for n in value)
    )


def _clean(text: str) -> str:
    return text.replace("\x00", "\ufffd").strip()


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# -- reporting from a worker ----------------------------------------------------------------------


class Reporter:
    """Sends one worker's catalog now and every ``interval`` seconds until stopped."""

    def __init__(
        self, app: Celery, hostname: str, target: Target, interval: float = REPORT_INTERVAL
    ) -> None:
        self.app = app
        self.hostname = hostname
        self.target = target
        self.interval = interval
        self.sent = 0
        self.failures = 0
        self._described: tuple[list[TaskInfo], int] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Any = None

    def report(self) -> Report:
        if self._described is None:  # once: tasks do not change after the worker started
            self._described = describe(self.app)
            if self._described[1]:
                logger.warning(
                    "tasktrail catalog: %d task names left out (over %d tasks, or unusable names)",
                    self._described[1],
                    MAX_TASKS,
                )
        tasks, left_out = self._described
        return Report(
            hostname=(_text(self.hostname) or "unknown").strip() or "unknown",
            app=_text(self.app.main) or "",
            ts=time.time(),
            tasks=tuple(tasks),
            pid=os.getpid(),
            truncated=left_out,
        )

    def send(self) -> bool:
        """One report; False (logged) when it could not be written."""
        try:
            import redis

            if self._client is None:
                self._client = redis.Redis.from_url(
                    self.target.recorder_url, socket_timeout=5.0, socket_connect_timeout=2.0
                )
            keys = getattr(self.target, "event_keys", ())  # TASKTRAIL_EVENT_KEY: signed
            fields = signed(encode_catalog(self.report()), keys, self.target.stream)
            self._client.xadd(self.target.stream, fields)
        except Exception as exc:
            self.failures += 1
            self._client = None
            logger.warning("tasktrail catalog: report to %s failed (%s)", self.target.stream, exc)
            return False
        self.sent += 1
        return True

    def start(self) -> None:
        """Report now, then periodically, from a daemon thread of this (the main) process: the
        worker is not held up (describing 5,000 tasks takes about a second)."""
        self._thread = threading.Thread(target=self._run, name="tasktrail-catalog", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.send()
        while not self._stop.wait(self.interval * random.uniform(0.9, 1.1)):
            self.send()

    def stop(self) -> None:
        self._stop.set()


_installed: tuple[Celery, Callable[[], Target | None]] | None = None
_reporter: Reporter | None = None


def install(app: Celery, config: Callable[[], Target | None]) -> None:
    """Report ``app``'s registered tasks from each worker of it. ``config()`` gives the resolved
    client configuration (``.recorder_url``, ``.stream``) or None when recording is off; it is
    called when the worker is ready. A second call replaces the first."""
    global _installed
    _installed = (app, config)
    signals.worker_ready.connect(_on_worker_ready, weak=False, dispatch_uid="tasktrail.catalog")
    signals.worker_shutdown.connect(_on_shutdown, weak=False, dispatch_uid="tasktrail.catalog")


def current() -> Reporter | None:
    return _reporter


def report_interval(environ: Mapping[str, str] | None = None) -> float:
    """Seconds between reports: ``TASKTRAIL_CATALOG_INTERVAL`` (1 to 86400), else the default."""
    text = (os.environ if environ is None else environ).get(ENV_INTERVAL, "").strip()
    if not text:
        return REPORT_INTERVAL
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 1 <= value <= 86400:
        logger.warning("tasktrail catalog: %s=%r is not 1-86400 seconds", ENV_INTERVAL, text[:50])
        return REPORT_INTERVAL
    return value


def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    global _reporter
    try:
        if _installed is None or _reporter is not None:
            return
        app, config = _installed
        worker_app = getattr(sender, "app", None)
        if worker_app is not None and worker_app is not app:
            return  # another app's worker in this process
        target = config()
        if target is None:
            return
        hostname = getattr(sender, "hostname", None) or f"{app.main or 'celery'}@{os.uname()[1]}"
        _reporter = Reporter(app, str(hostname), target, interval=report_interval())
        _reporter.start()
    except Exception:
        logger.exception("tasktrail catalog: could not report this worker's tasks (ignored)")


def _on_shutdown(**_: Any) -> None:
    if _reporter is not None:
        _reporter.stop()

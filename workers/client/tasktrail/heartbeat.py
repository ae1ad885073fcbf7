"""Worker heartbeats: each worker's main process says it is alive, and what it is doing.

When a worker is ready (``worker_ready``), a daemon thread of its main process (never a pool
child) adds a heartbeat to the event stream every ``TASKTRAIL_HEARTBEAT_INTERVAL`` seconds
(default 5): its own kind of entry, under the field ``h``. The monitor keeps one row per worker
from them, and a worker whose heartbeats stop without a goodbye is "gone": only then are its
running tasks LOST. A clean shutdown (``worker_shutdown``) sends a last heartbeat saying goodbye.

Why a thread and not Celery's remote control: a broadcast is answered by the worker's consumer
loop, which a solo pool blocks for as long as a task runs, so a busy worker looked dead. This
thread keeps beating while a solo pool runs a long task (the task releases the GIL every few
milliseconds); only a C extension that holds the GIL for long, or a gevent task that never yields,
can delay it.

Counters: ``processed`` and ``failed`` since the worker started, counted in the main process for
every pool. The main process learns each task's outcome through its request's ``on_success``,
``on_failure`` and ``on_timeout`` callbacks (``celery.worker.request``: the pool calls them there
for prefork, solo, threads and gevent alike, while the ``task_success`` and ``task_failure``
signals fire in the pool child under prefork). ``task_received`` (main process) hands each request
over; its callbacks are wrapped on that instance only, once.

Signed like event entries when ``TASKTRAIL_EVENT_KEY`` is set. Sending never raises into the
worker: a failure is logged (URLs masked) and the next beat tries again; the goodbye is tried a
few times with short timeouts. The stream's length cap is kept as ``tasktrail.stream_writer``
keeps it (XADD pipelined with XTRIM MAXLEN ~ cap).

The monitor decodes with ``decode_heartbeat``, which treats the entry as untrusted input. Imports
no Django.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import os
import platform
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import msgpack
from celery import Celery, signals

from tasktrail.config import ConfigError, _whole_number, masked, scrubbed
from tasktrail.signing import signed

logger = logging.getLogger("tasktrail.heartbeat")

SCHEMA_VERSION: Final = 1
ENTRY_FIELD: Final = b"h"
ENV_INTERVAL: Final = "TASKTRAIL_HEARTBEAT_INTERVAL"
ENV_RELEASE: Final = "TASKTRAIL_APP_VERSION"
DEFAULT_INTERVAL: Final = 5
MAX_INTERVAL: Final = 3600
MAX_TEXT: Final = 255
MAX_VERSION: Final = 64
MAX_RUNNING: Final = 100  # task ids listed; the count says how many run
MAX_QUEUES: Final = 100
# 100 queue names and 100 task ids of 255 characters fit in ~60 KB; anything larger is not ours.
MAX_ENTRY_BYTES: Final = 128 * 1024
GOODBYE_TRIES: Final = 3
TRIMMED_KEY_SUFFIX: Final = ":trimmed"  # the stream writers' trim counter (tasktrail.stream_writer)
_MAX_INT: Final = 2**31
_MAX_COUNT: Final = 2**62  # fits a BigIntegerField
_MIN_TS: Final = 946_684_800.0  # 2000-01-01
_MAX_TS: Final = 32_503_680_000.0  # year 3000
_LOG_EVERY: Final = 60.0  # one warning a minute while Redis stays away


class Target(Protocol):
    """Where heartbeats go: the client's resolved configuration has these."""

    @property
    def recorder_url(self) -> str: ...

    @property
    def stream(self) -> str: ...

    @property
    def stream_max_entries(self) -> int: ...


# -- the heartbeat ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Heartbeat:
    hostname: str
    ts: float  # the sender's clock
    pid: int
    started_at: float  # when this worker process started (the sender's clock)
    app: str = ""
    pool: str = ""
    concurrency: int | None = None
    queues: tuple[str, ...] = ()
    running: tuple[str, ...] = ()  # at most MAX_RUNNING ids
    running_count: int = 0
    processed: int = 0
    failed: int = 0
    celery: str = ""
    kombu: str = ""
    python: str = ""
    release: str = ""
    goodbye: bool = False

    def incarnation(self) -> tuple[int, float]:
        """Which run of the worker this is: a restart under the same hostname is another one."""
        return self.pid, self.started_at


def encode_heartbeat(beat: Heartbeat) -> dict[bytes, bytes]:
    """The fields of one stream entry carrying ``beat``."""
    body = {
        "v": SCHEMA_VERSION,
        "hostname": beat.hostname,
        "ts": beat.ts,
        "pid": beat.pid,
        "started_at": beat.started_at,
        "app": beat.app,
        "pool": beat.pool,
        "concurrency": beat.concurrency,
        "queues": list(beat.queues),
        "running": list(beat.running),
        "running_count": beat.running_count,
        "processed": beat.processed,
        "failed": beat.failed,
        "celery": beat.celery,
        "kombu": beat.kombu,
        "python": beat.python,
        "release": beat.release,
        "bye": beat.goodbye,
    }
    return {ENTRY_FIELD: msgpack.packb(body, use_bin_type=True)}


def is_heartbeat(fields: Mapping[bytes, bytes]) -> bool:
    return ENTRY_FIELD in fields


class HeartbeatError(ValueError):
    """Why an entry is not a usable heartbeat; ``raw`` is what to keep for a person to look at."""

    def __init__(self, reason: str, raw: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw


def decode_heartbeat(fields: Mapping[bytes, bytes]) -> Heartbeat:
    """Unpack and validate a heartbeat entry; raises ``HeartbeatError`` when it is unusable.

    What identifies the worker and drives its status (hostname, pid, start time, counters, the
    goodbye, the time) must be right or the whole beat is refused; what is only shown (names,
    versions, lists) is cleaned and cut to size: control characters removed, text at most 255
    characters (versions 64), lists at most 100 items of text."""
    packed = fields.get(ENTRY_FIELD)
    if not isinstance(packed, bytes):
        raise HeartbeatError("heartbeat entry has no 'h' field", dict(fields))
    if len(packed) > MAX_ENTRY_BYTES:
        raise HeartbeatError(f"heartbeat larger than {MAX_ENTRY_BYTES} bytes", packed[:1024])
    try:
        body = msgpack.unpackb(packed, raw=False, strict_map_key=True)
    except Exception as exc:  # any bytes may arrive here
        reason = f"heartbeat not msgpack: {type(exc).__name__}"
        raise HeartbeatError(reason, packed[:4096]) from None
    raw = packed[:4096]
    if not isinstance(body, dict):
        raise HeartbeatError(f"heartbeat is a {type(body).__name__}, not a map", raw)
    version = body.get("v")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise HeartbeatError("heartbeat has an unsupported schema version", raw)
    hostname = body.get("hostname")
    if (
        not isinstance(hostname, str)
        or not hostname.strip()
        or len(hostname) > MAX_TEXT
        or not hostname.isprintable()
    ):
        raise HeartbeatError(
            "heartbeat hostname missing or not 1-255 printable characters (it names the worker)",
            raw,
        )
    ts = _time(body.get("ts"))
    started_at = _time(body.get("started_at"))
    if ts is None or started_at is None:
        raise HeartbeatError("heartbeat ts or started_at is not a plausible Unix time", raw)
    pid = _int(body.get("pid"), 0, _MAX_INT)
    if pid is None:
        raise HeartbeatError("heartbeat pid is not a process id", raw)
    counters = [_int(body.get(key, 0), 0, _MAX_COUNT) for key in ("processed", "failed")]
    running_count = _int(body.get("running_count", 0), 0, _MAX_INT)
    if None in counters or running_count is None:
        raise HeartbeatError("heartbeat counters are not counts", raw)
    goodbye = body.get("bye", False)
    if not isinstance(goodbye, bool):
        raise HeartbeatError("heartbeat bye is not a boolean", raw)
    running = _texts(body.get("running"), MAX_RUNNING)
    return Heartbeat(
        hostname=hostname.strip(),
        ts=ts,
        pid=pid,
        started_at=min(started_at, ts),
        app=_text(body.get("app")),
        pool=_text(body.get("pool"), MAX_VERSION),
        concurrency=_int(body.get("concurrency"), 0, _MAX_INT),
        queues=tuple(dict.fromkeys(_texts(body.get("queues"), MAX_QUEUES))),
        running=running,
        running_count=max(running_count, len(running)),
        processed=counters[0] or 0,
        failed=counters[1] or 0,
        celery=_text(body.get("celery"), MAX_VERSION),
        kombu=_text(body.get("kombu"), MAX_VERSION),
        python=_text(body.get("python"), MAX_VERSION),
        release=_text(body.get("release")),
        goodbye=goodbye,
    )


def _time(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) and _MIN_TS <= value < _MAX_TS else None


def _int(value: Any, low: int, high: int) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if low <= value < high else None


def clean(value: Any, limit: int = MAX_TEXT) -> str:
    """Text as it may be stored and shown: no control characters (CR, LF, NUL, escapes), no lone
    surrogates, at most ``limit`` characters. Anything not a string is empty."""
    if not isinstance(value, str):
        return ""
    text = "".join(ch for ch in value[: limit * 4] if ch.isprintable() or ch == " ")
    text = text.encode("utf-8", "replace").decode("utf-8")
    return text.strip()[:limit]


_text = clean


def _texts(value: Any, limit: int) -> tuple[str, ...]:
    """The non-empty strings of a list, cleaned, at most ``limit`` of them."""
    if not isinstance(value, list | tuple):
        return ()
    out: list[str] = []
    for item in value:
        text = clean(item)
        if text:
            out.append(text)
            if len(out) >= limit:
                break
    return tuple(out)


# -- counting in the worker's main process ------------------------------------------------------


@dataclass
class Counters:
    """Tasks finished and failed since the worker started (main process, every pool)."""

    processed: int = 0
    failed: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def finished(self, failed: bool) -> None:
        with self._lock:  # the threads pool calls back from several threads
            self.processed += 1
            if failed:
                self.failed += 1

    def read(self) -> tuple[int, int]:
        with self._lock:
            return self.processed, self.failed


_COUNTED: Final = "_tasktrail_counted"


def watch_request(request: Any, counters: Counters) -> None:
    """Count ``request``'s outcome once, whichever of its callbacks the pool calls. Wraps the
    callbacks on this instance only; a request that cannot take them is simply not counted."""
    try:
        on_success, on_failure, on_timeout = (
            request.on_success,
            request.on_failure,
            request.on_timeout,
        )
    except AttributeError:
        return

    def count(failed: bool) -> None:
        try:
            if not getattr(request, _COUNTED, False):
                setattr(request, _COUNTED, True)
                counters.finished(failed)
        except Exception:  # never in the way of Celery's own handling
            logger.debug("tasktrail heartbeat: counting a task failed", exc_info=True)

    def success(failed__retval__runtime: Any, **kwargs: Any) -> Any:
        try:
            failed = bool(failed__retval__runtime[0])
        except Exception:
            failed = True
        if not failed:  # a failure goes on to on_failure, which counts it with its cause
            count(False)
        return on_success(failed__retval__runtime, **kwargs)

    def failure(exc_info: Any, *args: Any, **kwargs: Any) -> Any:
        count(_is_failure(exc_info))
        return on_failure(exc_info, *args, **kwargs)

    def timeout(soft: Any, limit: Any) -> Any:
        if not soft:  # the hard limit killed it: a failure (on_failure may follow; counted once)
            count(True)
        return on_timeout(soft, limit)

    with contextlib.suppress(AttributeError, TypeError):  # a request class without __dict__
        request.on_success, request.on_failure, request.on_timeout = success, failure, timeout


def _is_failure(exc_info: Any) -> bool:
    """A task failure as ``task_failure`` would report it: not a retry, an ignore, a requeue or a
    revoke (terminate)."""
    from billiard.einfo import ExceptionWithTraceback  # type: ignore[attr-defined]
    from celery.exceptions import Ignore, Reject, Retry, Terminated

    exc = getattr(exc_info, "exception", exc_info)
    if isinstance(exc, ExceptionWithTraceback):  # as it comes back from a prefork child
        exc = exc.exc
    if isinstance(exc, Retry | Ignore | Terminated):
        return False
    if isinstance(exc, Reject):
        return not getattr(exc, "requeue", False)
    return True


# -- what the worker is doing -------------------------------------------------------------------


def running_tasks(active: Iterable[Any] | None = None) -> tuple[tuple[str, ...], int]:
    """Ids of the tasks the worker runs now (at most MAX_RUNNING) and how many there are. Read
    from ``celery.worker.state.active_requests``, which the worker's threads change meanwhile."""
    if active is None:
        from celery.worker import state

        active = state.active_requests
    for _ in range(5):
        try:
            requests = list(active)
            break
        except RuntimeError:  # changed size during iteration: read again
            continue
    else:
        return (), 0
    ids = [i for i in (getattr(r, "id", None) for r in requests) if isinstance(i, str)]
    return tuple(ids[:MAX_RUNNING]), len(ids)


def consumed_queues(consumer: Any) -> tuple[str, ...] | None:
    """The queues the worker consumes now (they change with add/cancel consumer), or None when
    its consumer is not connected (reconnecting)."""
    task_consumer = getattr(consumer, "task_consumer", None)
    if task_consumer is None:
        return None
    queues = list(getattr(task_consumer, "queues", None) or [])
    return tuple(str(getattr(q, "name", q))[:MAX_TEXT] for q in queues[:MAX_QUEUES])


def pool_name(consumer: Any) -> str:
    """The pool's implementation name as ``-P`` spells it (prefork, solo, threads, gevent…)."""
    pool = getattr(consumer, "pool", None) or getattr(
        getattr(consumer, "controller", None), "pool", None
    )
    if pool is None:
        return ""
    cls = type(pool)
    path = f"{cls.__module__}:{cls.__qualname__}"
    aliases = getattr(importlib.import_module("celery.concurrency"), "ALIASES", {})
    for name, target in dict(aliases).items():
        if target == path and name != "processes":
            return str(name)
    return cls.__module__.rsplit(".", 1)[-1][:MAX_VERSION]


def _concurrency(consumer: Any) -> int | None:
    """How many tasks it runs at once: the pool's own limit (a solo pool says 1 whatever
    ``--concurrency`` was), else the worker's setting."""
    pool = getattr(consumer, "pool", None)
    for value in (
        getattr(pool, "limit", None),
        getattr(getattr(consumer, "controller", None), "concurrency", None),
    ):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def heartbeat_interval(environ: Mapping[str, str] | None = None) -> int:
    """Seconds between heartbeats: ``TASKTRAIL_HEARTBEAT_INTERVAL`` (1 to 3600), else 5."""
    env = os.environ if environ is None else environ
    try:
        value = _whole_number(None, env, ENV_INTERVAL, DEFAULT_INTERVAL, MAX_INTERVAL, "seconds")
    except ConfigError as exc:
        logger.warning("tasktrail heartbeat: %s; using %d", exc, DEFAULT_INTERVAL)
        return DEFAULT_INTERVAL
    if value < 1:
        logger.warning("tasktrail heartbeat: %s must be at least 1; using 1", ENV_INTERVAL)
        return 1
    return value


# -- sending ------------------------------------------------------------------------------------


class Heartbeater:
    """Beats for one worker's main process until stopped; ``goodbye()`` sends the last one."""

    def __init__(
        self,
        consumer: Any,
        app: Celery,
        hostname: str,
        target: Target,
        *,
        interval: float = DEFAULT_INTERVAL,
        counters: Counters | None = None,
        started_at: float | None = None,
        release: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.consumer = consumer
        self.app = app
        self.hostname = hostname
        self.target = target
        self.interval = float(interval)
        self.counters = counters or Counters()
        self.pid = os.getpid()
        self.started_at = started_at if started_at is not None else clock()
        self.release = release
        self.clock = clock
        self.sent = 0
        self.failures = 0
        self._queues: tuple[str, ...] = ()
        self._static = _versions()
        self._stop = threading.Event()
        self._send_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._next_log = 0.0
        self._said_goodbye = False

    def beat(self, goodbye: bool = False) -> Heartbeat:
        queues = consumed_queues(self.consumer)
        if queues is not None:
            self._queues = queues  # reconnecting: the queues it consumed last
        running, count = running_tasks()
        processed, failed = self.counters.read()
        concurrency = _concurrency(self.consumer)
        return Heartbeat(
            hostname=self.hostname,
            ts=self.clock(),
            pid=self.pid,
            started_at=self.started_at,
            app=str(getattr(self.app, "main", None) or "")[:MAX_TEXT],
            pool=pool_name(self.consumer),
            concurrency=concurrency if isinstance(concurrency, int) else None,
            queues=self._queues,
            running=running,
            running_count=count,
            processed=processed,
            failed=failed,
            release=self.release,
            goodbye=goodbye,
            **self._static,
        )

    def send(self, goodbye: bool = False) -> bool:
        """Add one heartbeat to the stream. False (logged) when it could not be written."""
        with self._send_lock:
            if self._said_goodbye:
                return True  # nothing after a goodbye: it would bring the worker back online
            try:
                keys = getattr(self.target, "event_keys", ())  # TASKTRAIL_EVENT_KEY: signed
                fields = signed(encode_heartbeat(self.beat(goodbye)), keys, self.target.stream)
                self._write(fields)
            except Exception as exc:  # redis errors, and anything else: never raise into Celery
                self.failures += 1
                self._client = None
                now = time.monotonic()
                if goodbye or now >= self._next_log:
                    self._next_log = now + _LOG_EVERY
                    logger.warning(
                        "tasktrail heartbeat: cannot write to %s at %s (%s); %d failed so far",
                        self.target.stream,
                        masked(self.target.recorder_url),
                        scrubbed(str(exc), self.target.recorder_url)[:300],
                        self.failures,
                    )
                return False
            self.sent += 1
            self._said_goodbye = goodbye
            return True

    def _write(self, fields: Mapping[Any, Any]) -> None:
        import redis

        if self._client is None:
            self._client = redis.Redis.from_url(
                self.target.recorder_url, socket_timeout=2.0, socket_connect_timeout=1.0
            )
        cap = int(getattr(self.target, "stream_max_entries", 0) or 0)
        if not cap:
            self._client.xadd(self.target.stream, fields)
            return
        pipe = self._client.pipeline(transaction=False)
        pipe.xadd(self.target.stream, fields)
        pipe.xtrim(self.target.stream, maxlen=cap, approximate=True)
        added, trimmed = pipe.execute(raise_on_error=False)
        if isinstance(added, Exception):
            raise added
        if isinstance(trimmed, int) and trimmed > 0:  # counted as the stream writers count theirs
            try:
                key = self.target.stream + TRIMMED_KEY_SUFFIX
                pipe = self._client.pipeline(transaction=False)
                pipe.hincrby(key, "entries", trimmed)
                pipe.hset(key, mapping={"at": time.time(), "cap": cap})
                pipe.execute()
            except Exception:  # counted by the next writer that trims; the beat is written
                logger.debug("tasktrail heartbeat: trim count not written", exc_info=True)

    def start(self) -> Heartbeater:
        self._thread = threading.Thread(target=self._run, name="tasktrail-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                self.send()
            except Exception:  # send catches its own; this is the last guard of the thread
                logger.exception("tasktrail heartbeat: beat failed (ignored)")
            next_at += self.interval
            now = time.monotonic()
            if next_at < now:  # late (a long GIL hold, a slow Redis): beat again now, not many
                next_at = now
            self._stop.wait(next_at - now)

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def goodbye(self) -> bool:
        """Stop beating and send the goodbye, trying a few times (short timeouts)."""
        self.stop()
        for attempt in range(GOODBYE_TRIES):
            if self.send(goodbye=True):
                return True
            time.sleep(0.2 * (attempt + 1))
        return False


def _versions() -> dict[str, str]:
    import celery
    import kombu

    return {
        "celery": str(getattr(celery, "__version__", ""))[:MAX_VERSION],
        "kombu": str(getattr(kombu, "__version__", ""))[:MAX_VERSION],
        "python": platform.python_version()[:MAX_VERSION],
    }


# -- wiring into the worker ---------------------------------------------------------------------

_installed: tuple[Celery, Callable[[], Target | None], str] | None = None
_beater: Heartbeater | None = None
_counters = Counters()
_started_at: float | None = None


def install(app: Celery, config: Callable[[], Target | None], release: str | None = None) -> None:
    """Beat from each worker of ``app``. ``config()`` gives the resolved client configuration or
    None when recording is off; it is called when the worker is ready. ``release`` (else
    ``TASKTRAIL_APP_VERSION``) says which version of the shop's code the worker runs."""
    global _installed
    text = release if release is not None else os.environ.get(ENV_RELEASE, "")
    _installed = (app, config, clean(str(text)))
    uid = "tasktrail.heartbeat"
    signals.worker_init.connect(_on_worker_init, weak=False, dispatch_uid=uid)
    signals.worker_ready.connect(_on_worker_ready, weak=False, dispatch_uid=uid)
    signals.task_received.connect(_on_task_received, weak=False, dispatch_uid=uid)
    signals.worker_shutdown.connect(_on_shutdown, weak=False, dispatch_uid=uid)


def current() -> Heartbeater | None:
    return _beater


def _on_worker_init(**_: Any) -> None:
    global _started_at
    _started_at = time.time()


def _on_task_received(request: Any = None, **_: Any) -> None:
    if _beater is not None and request is not None:  # a worker of the installed app
        watch_request(request, _counters)


def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    global _beater
    try:
        if _installed is None:
            return
        if _beater is not None and _beater.pid == os.getpid():
            _beater.consumer = sender or _beater.consumer  # reconnected: the new consumer
            return
        app, config, release = _installed
        worker_app = getattr(sender, "app", None)
        if worker_app is not None and worker_app is not app:
            return  # another app's worker in this process
        target = config()
        if target is None:
            return
        hostname = getattr(sender, "hostname", None) or f"{app.main or 'celery'}@{os.uname()[1]}"
        _beater = Heartbeater(
            sender,
            app,
            str(hostname),
            target,
            interval=heartbeat_interval(),
            counters=_counters,
            started_at=_started_at,
            release=release,
        ).start()
    except Exception:
        logger.exception("tasktrail heartbeat: could not start this worker's heartbeats (ignored)")


def _on_shutdown(**_: Any) -> None:
    try:
        if _beater is not None and _beater.pid == os.getpid():
            _beater.goodbye()
    except Exception:
        logger.exception("tasktrail heartbeat: goodbye failed (ignored)")

"""Queues an operator paused: no worker consumes them, now or after a restart, until resumed.

Celery only offers ``cancel_consumer``, which a worker forgets when it restarts, and which a
worker started later never heard. tasktrail keeps the paused queues in a Redis hash beside the
event stream (``<stream>:paused_queues``: queue -> JSON of who, when, why), written by the
dashboard, and every worker of an installed app:

- at start (``celeryd_after_setup``, after ``-Q``/``-X`` were applied and before the consumer
  exists) reads the hash and deselects the paused queues it would consume, the way ``-X`` does;
- answers two remote-control commands of its own, ``tasktrail_pause_queue`` and
  ``tasktrail_resume_queue``: a pause cancels the consumer only on a worker that consumes the
  queue; a resume adds it back only on a worker that had it (the same ``kombu.Queue``, so the
  same options), never on one that never consumed it;
- re-reads the hash every ``TASKTRAIL_PAUSE_REFRESH_SECONDS`` (15) in a daemon thread, and a timer
  of the consumer applies what changed, so a worker that missed a broadcast converges.

The consumer is only ever changed from its own thread: in a control command (deferred with
``call_soon``, as Celery's own ``cancel_consumer`` is) or a timer of the worker's event loop. The
Redis read happens elsewhere (start, the reader thread), never in the event loop. Nothing here
raises into the worker: failures are logged, with URLs masked. Messages a worker had already
fetched before the pause still run. Imports no Django.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import redis
from celery import Celery, bootsteps, signals

from tasktrail.config import ClientConfig, masked

logger = logging.getLogger("tasktrail.queue_pauses")

KEY_SUFFIX: Final = ":paused_queues"
PAUSE_COMMAND: Final = "tasktrail_pause_queue"
RESUME_COMMAND: Final = "tasktrail_resume_queue"
MAX_QUEUES: Final = 1000  # paused at once; the hash is read whole
MAX_QUEUE_NAME: Final = 255
MAX_REASON: Final = 500  # of the reason kept in Redis (the dashboard's row keeps it whole)
MAX_BY: Final = 150
MAX_ENTRY_BYTES: Final = 4096
ENV_REFRESH: Final = "TASKTRAIL_PAUSE_REFRESH_SECONDS"
DEFAULT_REFRESH: Final = 15.0
MIN_REFRESH: Final = 0.5
REDIS_TIMEOUT: Final = 2.0


def key(stream: str) -> str:
    return stream + KEY_SUFFIX


def queue_name_problem(name: Any) -> str | None:
    """Why ``name`` cannot be a paused queue's name (None: it can)."""
    if not isinstance(name, str) or not name.strip():
        return "a queue name is required"
    if len(name) > MAX_QUEUE_NAME:
        return f"a queue name is at most {MAX_QUEUE_NAME} characters"
    if name != name.strip() or not name.isprintable():
        return "a queue name has no surrounding spaces and no control characters"
    return None


@dataclass(frozen=True)
class Pause:
    queue: str
    by: str
    at: float  # epoch seconds
    reason: str

    def encode(self) -> str:
        return json.dumps(
            {"by": self.by[:MAX_BY], "at": self.at, "reason": self.reason[:MAX_REASON]}
        )


def remember(client: redis.Redis, stream: str, pause: Pause) -> None:
    """Add ``pause`` to the shared set (replacing an earlier entry for its queue)."""
    problem = queue_name_problem(pause.queue)
    if problem is not None:
        raise ValueError(problem)
    client.hset(key(stream), pause.queue, pause.encode())


def forget(client: redis.Redis, stream: str, queue: str) -> bool:
    """Take ``queue`` out of the shared set; whether it was there."""
    return bool(client.hdel(key(stream), queue))


def paused(client: redis.Redis, stream: str) -> dict[str, Pause]:
    """The shared set, each entry checked (an unusable one is skipped and logged): at most
    ``MAX_QUEUES`` queues, names sorted."""
    raw: Mapping[Any, Any] = client.hgetall(key(stream))
    out: dict[str, Pause] = {}
    for name_raw, value in sorted(raw.items()):
        pause = _decode(name_raw, value)
        if pause is None:
            logger.warning("tasktrail: an unusable paused-queue entry was skipped")
            continue
        out[pause.queue] = pause
        if len(out) >= MAX_QUEUES:
            break
    return out


def _decode(name_raw: Any, value: Any) -> Pause | None:
    try:
        name = name_raw.decode() if isinstance(name_raw, bytes) else str(name_raw)
        if queue_name_problem(name) is not None or len(value) > MAX_ENTRY_BYTES:
            return None
        data = json.loads(value)
        at = data.get("at")
        return Pause(
            queue=name,
            by=str(data.get("by") or "")[:MAX_BY],
            at=float(at) if isinstance(at, int | float) and not isinstance(at, bool) else 0.0,
            reason=str(data.get("reason") or "")[:MAX_REASON],
        )
    except (ValueError, TypeError, AttributeError, UnicodeDecodeError):
        return None


# -- in the worker ---------------------------------------------------------------------------------


def refresh_seconds(environ: Mapping[str, str] = os.environ) -> float:
    raw = environ.get(ENV_REFRESH, "")
    try:
        value = float(raw) if raw.strip() else DEFAULT_REFRESH
    except ValueError:
        logger.warning("tasktrail: %s=%r is not a number: using 15", ENV_REFRESH, raw)
        return DEFAULT_REFRESH
    return value if value >= MIN_REFRESH else MIN_REFRESH


@dataclass(frozen=True)
class _Snapshot:
    started: float  # time.monotonic() when the read began
    names: frozenset[str]


class WorkerPauses:
    """One worker process's side: the queues it stopped consuming because they are paused."""

    def __init__(self, config: Callable[[], ClientConfig | None]) -> None:
        self.config = config
        # queue name -> the kombu Queue this worker consumed it with (added back on resume)
        self.held: dict[str, Any] = {}
        self.changed_at = 0.0  # monotonic: the latest command or convergence applied here
        self.latest: _Snapshot | None = None  # written by the reader thread, read by the timer
        self._reader: threading.Thread | None = None
        self._reader_pid = 0

    # -- reading the shared set (never on the event loop) --

    def read(self) -> _Snapshot | None:
        resolved = self.config()
        if resolved is None:
            return None
        started = time.monotonic()
        client = redis.Redis.from_url(
            resolved.recorder_url,
            socket_timeout=REDIS_TIMEOUT,
            socket_connect_timeout=REDIS_TIMEOUT,
        )
        try:
            names = frozenset(paused(client, resolved.stream))
        except redis.RedisError as exc:
            logger.warning(
                "tasktrail: could not read the paused queues from %s: %s",
                masked(resolved.recorder_url),
                type(exc).__name__,
            )
            return None
        finally:
            client.close()
        return _Snapshot(started, names)

    def start_reader(self, every: float) -> None:
        if self._reader is not None and self._reader.is_alive() and self._reader_pid == os.getpid():
            return
        self._reader_pid = os.getpid()
        self._reader = threading.Thread(
            target=self._read_forever, args=(every,), name="tasktrail-pauses", daemon=True
        )
        self._reader.start()

    def _read_forever(self, every: float) -> None:
        while True:
            time.sleep(every)
            try:
                snapshot = self.read()
            except Exception:
                logger.exception("tasktrail: reading the paused queues failed (ignored)")
                continue
            if snapshot is not None:
                self.latest = snapshot

    # -- at start, before the consumer exists --

    def at_setup(self, app: Celery) -> None:
        snapshot = self.read()
        if snapshot is None:
            return
        queues = app.amqp.queues
        for name in sorted(snapshot.names):
            if name in queues.consume_from:
                self.held[name] = queues.consume_from[name]
                queues.deselect([name])
                logger.warning("tasktrail: queue %s is paused: not consuming it", name)

    # -- on the consumer's own thread --

    def consumes(self, consumer: Any, name: str) -> bool:
        return name in consumer.app.amqp.queues.consume_from

    def pause_here(self, consumer: Any, name: str) -> bool:
        """Stop consuming ``name`` if this worker consumes it; whether it did."""
        queues = consumer.app.amqp.queues
        queue = queues.consume_from.get(name)
        if queue is None:
            return False
        self.held[name] = queue
        if consumer.task_consumer is not None:
            consumer.cancel_task_queue(name)
        else:
            queues.deselect([name])
        logger.warning("tasktrail: queue %s paused: no longer consuming it", name)
        return True

    def resume_here(self, consumer: Any, name: str) -> bool:
        """Consume ``name`` again if this worker stopped because of a pause; whether it did."""
        queue = self.held.pop(name, None)
        if queue is None:
            return False
        queues = consumer.app.amqp.queues
        if name not in queues:
            queues.add(queue)
        if consumer.task_consumer is not None:
            consumer.add_task_queue(name)
        else:
            queues.select_add(queue)
        logger.warning("tasktrail: queue %s resumed: consuming it again", name)
        return True

    def converge(self, consumer: Any) -> None:
        """Apply the reader's latest snapshot, unless a command acted since it was read."""
        snapshot = self.latest
        if snapshot is None or snapshot.started <= self.changed_at:
            return
        self.latest = None
        for name in sorted(snapshot.names):
            if name not in self.held and self.consumes(consumer, name):
                self.pause_here(consumer, name)
        for name in sorted(set(self.held) - snapshot.names):
            self.resume_here(consumer, name)
        self.changed_at = time.monotonic()

    def command(self, consumer: Any, name: Any, pause: bool) -> dict[str, str]:
        """A control command's answer, said at once; the change itself runs on the consumer's
        thread through ``call_soon``, as Celery's ``cancel_consumer`` does."""
        problem = queue_name_problem(name)
        if problem is not None:
            return {"error": problem}
        self.changed_at = time.monotonic()
        if pause:
            if name in self.held:
                return {"ok": "already paused here"}
            if not self.consumes(consumer, name):
                return {"ok": "not consuming"}
            consumer.call_soon(self._guarded, self.pause_here, consumer, name)
            return {"ok": "stopping"}
        if name not in self.held:
            return {"ok": "not held"}
        consumer.call_soon(self._guarded, self.resume_here, consumer, name)
        return {"ok": "resuming"}

    def _guarded(self, change: Callable[[Any, str], bool], consumer: Any, name: str) -> None:
        try:
            change(consumer, name)
        except Exception:
            logger.exception("tasktrail: changing the consumer of queue %s failed (ignored)", name)
        self.changed_at = time.monotonic()


_pauses: WorkerPauses | None = None


def _register_commands() -> None:
    from celery.worker.control import Panel, control_command

    if PAUSE_COMMAND in Panel.data:
        return

    @control_command(name=PAUSE_COMMAND, args=[("queue", str)], signature="<queue>")
    def pause_queue(state: Any, queue: Any = None, **_: Any) -> dict[str, str]:
        """tasktrail: stop consuming a paused queue (only where it is consumed)."""
        return _answer(state, queue, pause=True)

    @control_command(name=RESUME_COMMAND, args=[("queue", str)], signature="<queue>")
    def resume_queue(state: Any, queue: Any = None, **_: Any) -> dict[str, str]:
        """tasktrail: consume a resumed queue again (only where a pause stopped it)."""
        return _answer(state, queue, pause=False)


def _answer(state: Any, queue: Any, *, pause: bool) -> dict[str, str]:
    if _pauses is None:
        return {"error": "tasktrail queue pauses are not installed in this worker"}
    try:
        return _pauses.command(state.consumer, queue, pause)
    except Exception as exc:
        logger.exception("tasktrail: a queue pause or resume failed (ignored)")
        return {"error": type(exc).__name__}


class _Converge(bootsteps.StartStopStep):
    """A timer of the consumer that applies the reader's latest snapshot (see ``converge``)."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, c: Any, **kwargs: Any) -> None:
        self.tref: Any = None
        super().__init__(c, **kwargs)

    def start(self, c: Any) -> None:
        try:
            pauses = _pauses
            if pauses is None:
                return
            every = refresh_seconds()
            pauses.start_reader(every)
            self.tref = c.timer.call_repeatedly(max(MIN_REFRESH, every / 2), self._tick, (c,))
        except Exception:
            logger.exception("tasktrail: the paused-queue timer could not start (ignored)")

    def _tick(self, c: Any) -> None:
        pauses = _pauses
        if pauses is None:
            return
        try:
            if c.hub is None:  # a timer thread of its own: the consumer's loop runs it
                c.call_soon(self._converge, pauses, c)
            else:  # the event loop's timer: already the consumer's thread
                self._converge(pauses, c)
        except Exception:
            logger.exception("tasktrail: the paused-queue timer failed (ignored)")

    @staticmethod
    def _converge(pauses: WorkerPauses, c: Any) -> None:
        try:
            pauses.converge(c)
        except Exception:
            logger.exception("tasktrail: applying the paused queues failed (ignored)")

    def stop(self, c: Any) -> None:
        if self.tref is not None:
            try:
                self.tref.cancel()
            except Exception:
                logger.debug("tasktrail: the paused-queue timer could not be cancelled")
            self.tref = None

    shutdown = stop


def install(app: Celery, config: Callable[[], ClientConfig | None]) -> None:
    """Make every worker of ``app`` honour paused queues (see the module's text)."""
    global _pauses
    pauses = _pauses = WorkerPauses(config)
    _register_commands()
    app.steps["consumer"].add(_Converge)

    def setup(sender: Any = None, instance: Any = None, **_: Any) -> None:
        try:
            pauses.at_setup(getattr(instance, "app", None) or app)
        except Exception:  # never stop a worker from starting
            logger.exception("tasktrail: applying the paused queues at start failed (ignored)")

    signals.celeryd_after_setup.connect(
        setup, weak=False, dispatch_uid="tasktrail.queue_pauses.setup"
    )

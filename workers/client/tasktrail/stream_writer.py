"""A per-process buffer that appends recorder events to the Redis stream in batches.

``emit`` only appends to an in-memory deque, so a task never waits on the network. A daemon thread
packs whatever is buffered into one stream entry every ``flush_interval`` seconds (and sooner when a
batch fills up). One XADD per batch instead of one per signal is what keeps the recorder's cost near
plain Celery's (measured in ``bench/``).

Fork-safe: a forked child starts with an empty buffer, no thread and no connection of its own, and
builds them on its first event. What a process killed with SIGKILL can lose is what it buffered
since the last flush: at most one flush interval of events.

When Redis cannot be reached the batch is kept and retried with back-off; past ``max_buffered``
events new ones are dropped and counted (``stats``, a log warning, and the ``dropped`` field of
the ``<stream>:recorder`` hash, e.g. ``tasktrail:events:recorder``, once Redis answers
again; a process that exits while Redis is down can only log them).

The stream has a length cap (``max_entries``, ``TASKTRAIL_STREAM_MAX_ENTRIES``) so Redis does not
fill up while no monitor reads it. The monitor deletes what it has written, so every entry left is
one no monitor has finished: the writers enforce the cap themselves (it must hold while the monitor
is down) and count what they trim. Each XADD is pipelined with an ``XTRIM MAXLEN ~ cap`` (no extra
round trip; below the cap it removes nothing and costs next to nothing). XTRIM says how many
entries it removed; when some were, a second round trip adds them to the ``entries`` field of the
``<stream>:trimmed`` hash (a count Redis does not take yet is kept and added with the next one).
The monitor shows that count and warns well before the cap is reached.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import redis

from tasktrail.events import Event, encode_batch

logger = logging.getLogger("tasktrail.recorder")

DEFAULT_STREAM = "tasktrail:events"
STATS_KEY_SUFFIX = ":recorder"
TRIMMED_KEY_SUFFIX = ":trimmed"  # hash: entries (trimmed in all), at (latest trim), cap
DEFAULT_MAX_ENTRIES = 1_000_000
TRIM_LOG_SECONDS = 60.0  # one warning a minute per process while trimming goes on


@dataclass
class WriterStats:
    emitted: int = 0
    written: int = 0
    dropped: int = 0
    failed_flushes: int = 0
    trimmed: int = 0  # stream entries this process trimmed past the cap (all processes' too)
    failed_trims: int = 0


class StreamWriter:
    def __init__(
        self,
        redis_url: str,
        stream: str = DEFAULT_STREAM,
        *,
        flush_interval: float = 0.1,
        max_batch: int = 2000,
        max_buffered: int = 100_000,
        max_backoff: float = 5.0,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        self.redis_url = redis_url
        self.stream = stream
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self.max_buffered = max_buffered
        self.max_backoff = max_backoff
        self.max_entries = max(0, int(max_entries))  # 0: no cap
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._buffer: deque[Event] = deque()
        self._retry: list[Event] = []  # a batch that failed to write, sent first next time
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: redis.Redis | None = None
        self._backoff_until = 0.0
        self._backoff = 0.0
        self._unreported_drops = 0
        self._unreported_trims = 0  # trimmed, not yet added to the counter (Redis refused it)
        self._next_trim_log = 0.0
        self._cap_published = False
        self.stats = WriterStats()

    # -- called from signal receivers: must stay cheap and never raise ------------------------

    def emit(self, event: Event) -> None:
        if self._pid != os.getpid():  # forked without the at-fork hook (e.g. os.fork in C code)
            self._reset()
        if len(self._buffer) + len(self._retry) >= self.max_buffered:
            self.stats.dropped += 1
            self._unreported_drops += 1
            return
        self._buffer.append(event)
        self.stats.emitted += 1
        if self._thread is None:
            self._start_thread()
        elif len(self._buffer) >= self.max_batch:
            self._wake.set()

    # -- background ---------------------------------------------------------------------------

    def _start_thread(self) -> None:
        thread = threading.Thread(target=self._run, name="tasktrail-recorder", daemon=True)
        self._thread = thread
        thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            self.flush()

    def flush(self) -> bool:
        """Write everything buffered. False when Redis could not take it (kept for later)."""
        with self._flush_lock:
            if time.monotonic() < self._backoff_until:
                return False
            while self._retry or self._buffer:
                batch = self._retry or self._take(self.max_batch)
                self._retry = []
                try:
                    self._write(batch)
                except Exception as exc:  # redis errors, and anything else: never raise into Celery
                    self._retry = batch
                    self._backoff = min(
                        self.max_backoff, max(self.flush_interval, self._backoff * 2)
                    )
                    self._backoff_until = time.monotonic() + self._backoff
                    self.stats.failed_flushes += 1
                    if self.stats.failed_flushes == 1 or self._backoff >= self.max_backoff:
                        logger.warning(
                            "tasktrail recorder: cannot write to %s (%s); %d events waiting, "
                            "%d dropped so far",
                            self.stream,
                            exc,
                            len(batch) + len(self._buffer),
                            self.stats.dropped,
                        )
                    self._client = None
                    return False
                self.stats.written += len(batch)
                self._backoff = 0.0
            self._report_drops()
            return True

    def _take(self, limit: int) -> list[Event]:
        batch: list[Event] = []
        popleft = self._buffer.popleft
        try:
            while len(batch) < limit:
                batch.append(popleft())
        except IndexError:
            pass
        return batch

    def _redis(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis.from_url(
                self.redis_url, socket_timeout=2.0, socket_connect_timeout=1.0
            )
        return self._client

    @property
    def trimmed_key(self) -> str:
        return self.stream + TRIMMED_KEY_SUFFIX

    def _write(self, batch: list[Event]) -> None:
        """XADD the batch; raises only when the XADD itself failed (the batch is then retried)."""
        client = self._redis()
        if not self.max_entries:
            client.xadd(self.stream, encode_batch(batch))
            return
        pipe = client.pipeline(transaction=False)
        pipe.xadd(self.stream, encode_batch(batch))
        pipe.xtrim(self.stream, maxlen=self.max_entries, approximate=True)
        if not self._cap_published:  # so the monitor warns against the cap the writers use
            pipe.hset(self.trimmed_key, "cap", self.max_entries)
        replies = pipe.execute(raise_on_error=False)
        if isinstance(replies[0], Exception):
            raise replies[0]
        self._cap_published = not any(isinstance(r, Exception) for r in replies[2:])
        self._count_trim(client, replies[1])

    def _count_trim(self, client: redis.Redis, reply: Any) -> None:
        """Add what XTRIM removed to the stream's count. Never raises: the batch is written by now,
        and a count Redis does not take is kept for the next trim."""
        if not isinstance(reply, int):  # XTRIM refused (an ACL): the stream grows past the cap
            self.stats.failed_trims += 1
            if self.stats.failed_trims == 1:
                logger.warning(
                    "tasktrail recorder: cannot trim %s to its cap of %d entries (%s); it grows "
                    "past the cap until Redis allows XTRIM",
                    self.stream,
                    self.max_entries,
                    reply,
                )
            return
        if reply > 0:
            self.stats.trimmed += reply
            self._unreported_trims += reply
            now = time.monotonic()
            if now >= self._next_trim_log:  # a trim every ~100 entries while the monitor is down
                self._next_trim_log = now + TRIM_LOG_SECONDS
                logger.warning(
                    "tasktrail recorder: %s went over its cap of %d entries: dropped the oldest, "
                    "%d by this process so far (no monitor had written them; counted in %s)",
                    self.stream,
                    self.max_entries,
                    self.stats.trimmed,
                    self.trimmed_key,
                )
        if not self._unreported_trims:
            return
        count, self._unreported_trims = self._unreported_trims, 0
        try:
            pipe = client.pipeline(transaction=False)
            pipe.hincrby(self.trimmed_key, "entries", count)
            pipe.hset(self.trimmed_key, mapping={"at": time.time(), "cap": self.max_entries})
            pipe.execute()
        except Exception:
            self._unreported_trims += count

    def _report_drops(self) -> None:
        if not self._unreported_drops:
            return
        count, self._unreported_drops = self._unreported_drops, 0
        logger.warning("tasktrail recorder: dropped %d events while Redis was unreachable", count)
        try:
            self._redis().hincrby(self.stream + STATS_KEY_SUFFIX, "dropped", count)
        except Exception:
            self._unreported_drops += count

    def close(self, timeout: float = 2.0) -> None:
        """Stop the thread and write what is left (bounded by the client's socket timeouts)."""
        if self._pid != os.getpid():
            return
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._backoff_until = 0.0
        if not self.flush():
            lost = len(self._retry) + len(self._buffer)
            self._retry, self._buffer = [], deque()
            self.stats.dropped += lost
            logger.warning(
                "tasktrail recorder: %d events lost at shutdown (Redis unreachable); "
                "%d dropped in all",
                lost,
                self.stats.dropped,
            )
        self._stop.clear()
        self._thread = None

    def describe(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "max_entries": self.max_entries,
            "buffered": len(self._buffer),
            **vars(self.stats),
        }

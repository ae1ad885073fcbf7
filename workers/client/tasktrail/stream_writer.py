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

A batch is packed before Redis is asked, so a bad event and a Redis error are never confused:
``make_event`` already fits every value to the event schema, and an event that still cannot be
packed is dropped alone (the batch is packed event by event), counted in ``stats.invalid`` and the
``invalid`` field of that hash, and logged at most once a minute with the reason. Only entries
Redis did not take are retried. A batch is split into entries of at most ``MAX_PACKED_BYTES``.
With signing keys (``TASKTRAIL_EVENT_KEY``), each entry is signed once, as it is packed.

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

from tasktrail import events as event_schema
from tasktrail.events import ENTRY_FIELD, MAX_BATCH_EVENTS, MAX_ENTRY_EVENTS, Event, encode_entries
from tasktrail.signing import SigningKey, sign

logger = logging.getLogger("tasktrail.recorder")

DEFAULT_STREAM = "tasktrail:events"
STATS_KEY_SUFFIX = ":recorder"
TRIMMED_KEY_SUFFIX = ":trimmed"  # hash: entries (trimmed in all), at (latest trim), cap
DEFAULT_MAX_ENTRIES = 1_000_000
TRIM_LOG_SECONDS = 60.0  # one warning a minute per process while trimming goes on
PROBLEM_LOG_SECONDS = 60.0  # bad events and fields fitted to the schema: one line a minute each


@dataclass
class WriterStats:
    emitted: int = 0
    written: int = 0
    dropped: int = 0
    failed_flushes: int = 0
    trimmed: int = 0  # stream entries this process trimmed past the cap (all processes' too)
    failed_trims: int = 0
    invalid: int = 0  # events dropped because they could not be packed (never retried)


class StreamWriter:
    def __init__(
        self,
        redis_url: str,
        stream: str = DEFAULT_STREAM,
        *,
        flush_interval: float = 0.1,
        max_batch: int = MAX_BATCH_EVENTS,
        max_buffered: int = 100_000,
        max_backoff: float = 5.0,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        signing_key: SigningKey | None = None,
    ) -> None:
        self.redis_url = redis_url
        self.stream = stream
        self.flush_interval = flush_interval
        self.max_batch = max(1, min(max_batch, MAX_ENTRY_EVENTS))  # what a monitor reads whole
        self.signing_key = signing_key
        self.max_buffered = max_buffered
        self.max_backoff = max_backoff
        self.max_entries = max(0, int(max_entries))  # 0: no cap
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._buffer: deque[Event] = deque()
        # Entries packed (and signed) that Redis did not take, with their event counts: sent
        # first next time, as they are.
        self._retry: list[tuple[dict[bytes, bytes], int]] = []
        self._last_error = ""
        self._unreported_invalid = 0
        self._next_invalid_log = 0.0
        self._fixes_logged = 0
        self._next_fixes_log = 0.0
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
        if len(self._buffer) + self._retrying() >= self.max_buffered:
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
            try:
                self.flush()
            except Exception:  # a bug here must not end recording for the process's life
                logger.exception("tasktrail recorder: writing events failed (will try again)")
                self._stop.wait(self.max_backoff)

    def flush(self) -> bool:
        """Write everything buffered. False when Redis could not take it (kept for later)."""
        with self._flush_lock:
            if time.monotonic() < self._backoff_until:
                return False
            while self._retry or self._buffer:
                if not self._retry:
                    self._retry = self._pack(self._take(self.max_batch))
                    continue
                try:
                    self._write()
                except (redis.RedisError, OSError) as exc:  # kept and retried with back-off
                    self._redis_failed(exc)
                    return False
                except Exception as exc:  # not Redis: the entries themselves; never retried
                    lost = self._retrying()
                    self._retry = []
                    self._count_invalid(lost, f"not written ({type(exc).__name__}: {exc})")
                self._backoff = 0.0
            self._report_drops()
            self._log_fixes()
            return True

    def _retrying(self) -> int:
        return sum(count for _, count in self._retry)

    def _pack(self, batch: list[Event]) -> list[tuple[dict[bytes, bytes], int]]:
        """The batch as entries to XADD; events that cannot be packed are dropped and counted."""
        payloads, bad = encode_entries(batch)
        if bad:
            self._count_invalid(len(bad), bad[0][1])
        entries: list[tuple[dict[bytes, bytes], int]] = []
        for payload in payloads:
            fields = {ENTRY_FIELD: payload}
            if self.signing_key is not None:
                fields = sign(fields, self.signing_key, self.stream)
            entries.append((fields, _count_of(payload)))
        return entries

    def _count_invalid(self, count: int, reason: str) -> None:
        self.stats.invalid += count
        self._unreported_invalid += count
        now = time.monotonic()
        if now >= self._next_invalid_log:
            self._next_invalid_log = now + PROBLEM_LOG_SECONDS
            logger.warning(
                "tasktrail recorder: dropped %d events that cannot be packed for %s (%s); %d in "
                "all. Not a Redis problem: the events themselves, other events are written",
                count,
                self.stream,
                reason,
                self.stats.invalid,
            )

    def _redis_failed(self, exc: Exception) -> None:
        self._backoff = min(self.max_backoff, max(self.flush_interval, self._backoff * 2))
        self._backoff_until = time.monotonic() + self._backoff
        self._last_error = f"{type(exc).__name__}: {exc}"[:300]
        self.stats.failed_flushes += 1
        if self.stats.failed_flushes == 1 or self._backoff >= self.max_backoff:
            logger.warning(
                "tasktrail recorder: Redis did not take the events for %s (%s); %d events "
                "waiting, %d dropped so far",
                self.stream,
                self._last_error,
                self._retrying() + len(self._buffer),
                self.stats.dropped,
            )
        self._client = None

    def _log_fixes(self) -> None:
        """Say (once a minute) that values not fitting the event schema were dropped or cut."""
        fixes = event_schema.FIXES
        if fixes.total == self._fixes_logged or time.monotonic() < self._next_fixes_log:
            return
        self._next_fixes_log = time.monotonic() + PROBLEM_LOG_SECONDS
        logger.warning(
            "tasktrail recorder: %d event values did not fit the event schema and were dropped "
            "or cleaned, %d in all (%s); the events were kept",
            fixes.total - self._fixes_logged,
            fixes.total,
            fixes.summary(),
        )
        self._fixes_logged = fixes.total

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

    def _write(self) -> None:
        """XADD the pending entries in one round trip. Raises when Redis did not take one; those
        stay pending, the others are counted as written."""
        client = self._redis()
        pipe = client.pipeline(transaction=False)
        for fields, _ in self._retry:
            pipe.xadd(self.stream, fields)  # type: ignore[arg-type]
        if self.max_entries:
            pipe.xtrim(self.stream, maxlen=self.max_entries, approximate=True)
            if not self._cap_published:  # so the monitor warns against the cap the writers use
                pipe.hset(self.trimmed_key, "cap", self.max_entries)
        replies = pipe.execute(raise_on_error=False)
        added = len(self._retry)
        failed = [entry for entry, reply in zip(self._retry, replies[:added], strict=True)
                  if isinstance(reply, Exception)]  # fmt: skip
        self.stats.written += self._retrying() - sum(count for _, count in failed)
        self._retry = failed
        if self.max_entries:
            trim = replies[added:]
            self._cap_published = not any(isinstance(r, Exception) for r in trim[1:])
            self._count_trim(client, trim[0])
        if failed:
            error = next(r for r in replies[:added] if isinstance(r, Exception))
            raise error

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
        """Add what was dropped to the stream's counters (``dropped``: the buffer was full while
        Redis did not answer; ``invalid``: events that could not be packed)."""
        if not self._unreported_drops and not self._unreported_invalid:
            return
        drops, self._unreported_drops = self._unreported_drops, 0
        invalid, self._unreported_invalid = self._unreported_invalid, 0
        if drops:
            logger.warning(
                "tasktrail recorder: dropped %d events: the buffer was full while Redis did not "
                "take events",
                drops,
            )
        try:
            pipe = self._redis().pipeline(transaction=False)
            if drops:
                pipe.hincrby(self.stream + STATS_KEY_SUFFIX, "dropped", drops)
            if invalid:
                pipe.hincrby(self.stream + STATS_KEY_SUFFIX, "invalid", invalid)
            pipe.execute()
        except Exception:
            self._unreported_drops += drops
            self._unreported_invalid += invalid

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
        if not self.flush():  # only entries Redis did not take are left: bad events are gone
            lost = self._retrying() + len(self._buffer)
            self._retry, self._buffer = [], deque()
            self.stats.dropped += lost
            logger.warning(
                "tasktrail recorder: %d events lost at shutdown: Redis did not take them (%s); "
                "%d dropped in all",
                lost,
                self._last_error or "no answer",
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


def _count_of(payload: bytes) -> int:
    """How many events a payload ``encode_entries`` made holds (from its array header)."""
    first = payload[0]
    if first < 0xA0:
        return first - 0x90
    size = 2 if first == 0xDC else 4
    return int.from_bytes(payload[1 : 1 + size], "big")

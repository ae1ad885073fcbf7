"""The monitor loop: read a batch from the stream, write it, acknowledge it, repeat.

- A malformed entry or event is logged, counted and moved to the dead-letter stream; it never stops
  the loop.
- When the database is unreachable the batch in hand stays unacknowledged; the loop backs off and
  writes it again once the database answers, so nothing is lost.
- A batch the database refuses for its content (not for being down) is split to find the events
  at fault, which go to the dead-letter stream; the rest is written.
- A worker's task catalog (its own kind of entry, ``tasktrail.catalog``) is validated like events
  and replaces that worker's ``RegisteredTask`` rows; a bad one is dead-lettered and counted.
- ``stop()`` (SIGTERM, Ctrl-C) lets the batch in hand finish, then the loop returns.
- Work per entry is bounded (``tasktrail.events.decode_entry``): at most 4,000 events are read,
  and an entry's many bad items are a few dead letters and log lines, the rest counted in one.
- With ``TASKTRAIL_EVENT_KEY`` set, an entry that is unsigned or wrongly signed
  (``tasktrail.signing``) is dead-lettered whole before anything in it is read, counted in
  ``unsigned``; at most ``SIGNATURE_LOG_LINES`` such log lines a minute, then one summing up.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import islice

import redis
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection

from dashboard import redis_keys
from dashboard.ingest.bounds import admit
from dashboard.ingest.catalog import write_catalog
from dashboard.ingest.heartbeats import write_heartbeats
from dashboard.ingest.stream import Entry, StreamConsumer
from dashboard.ingest.writer import write_events
from tasktrail.catalog import CatalogError, Report, decode_catalog, is_catalog
from tasktrail.events import ENTRY_FIELD, Event, Rejected, decode_entry
from tasktrail.heartbeat import Heartbeat, HeartbeatError, decode_heartbeat, is_heartbeat
from tasktrail.signing import SigningKey, verify

logger = logging.getLogger("tasktrail.monitor")
SIGNATURE_LOG_LINES = 10  # per minute; more refused entries are summed up in one line


@dataclass
class MonitorStats:
    entries: int = 0
    events: int = 0
    rejected: int = 0
    catalogs: int = 0
    unsigned: int = 0  # entries refused for a missing or wrong signature (also in rejected)
    heartbeats: int = 0
    batches: int = 0
    db_retries: int = 0
    started_at: float = field(default_factory=time.time)


class Monitor:
    def __init__(
        self,
        consumer: StreamConsumer,
        *,
        batch_entries: int = 200,
        block_ms: int = 1000,
        max_backoff: float = 10.0,
        heartbeat_every: float = 2.0,
        min_batch_interval: float = 0.25,
        event_keys: tuple[SigningKey, ...] | None = None,
    ) -> None:
        self.consumer = consumer
        # Keys entries must be signed with (none: signatures are ignored); settings by default.
        self.event_keys = settings.TASKTRAIL_EVENT_KEYS if event_keys is None else event_keys
        self._signature_log = (0.0, 0, 0)  # window start, lines logged, refusals not logged
        self.batch_entries = batch_entries
        self.block_ms = block_ms
        self.max_backoff = max_backoff
        self.heartbeat_every = heartbeat_every
        # A batch that did not fill up waits this long before the next read, so events from many
        # workers arrive together: a few larger writes cost less than many tiny ones.
        self.min_batch_interval = min_batch_interval
        self.stats = MonitorStats()
        self._stopping = threading.Event()
        self._last_heartbeat = 0.0

    def stop(self) -> None:
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # -- loop -----------------------------------------------------------------------------------

    def run(self, *, drain: bool = False) -> MonitorStats:
        """Process until stopped; with ``drain``, until the stream has nothing left for us."""
        if drain:
            self.consumer.claim_idle_ms = 0  # take over whatever another monitor left pending
        self._call_redis(self.consumer.ensure_group)
        while not self.stopping:
            started = time.monotonic()
            entries = self._call_redis(
                lambda: self.consumer.read(self.batch_entries, None if drain else self.block_ms)
            )
            if entries:
                self.process(entries)
                if not drain and len(entries) < self.batch_entries:
                    self._stopping.wait(self.min_batch_interval - (time.monotonic() - started))
            elif drain and entries is not None:
                break
            self._maybe_heartbeat()
        self._maybe_heartbeat(force=True)
        return self.stats

    def process(self, entries: Sequence[Entry]) -> bool:
        """Decode, write and acknowledge ``entries``.

        Returns False if stopped before the write succeeded (the entries stay pending)."""
        events: list[Event] = []
        reports: list[tuple[bytes, Report]] = []
        beats: list[tuple[bytes, Heartbeat]] = []
        for entry_id, fields in entries:
            if not fields:
                continue  # deleted while pending: already processed
            if self.event_keys and not self._signed(entry_id, fields):
                continue  # dead-lettered whole: nothing of it is read
            if is_heartbeat(fields):
                beat = self._decode_heartbeat(entry_id, fields)
                if beat is not None:
                    beats.append((entry_id, beat))
                if ENTRY_FIELD not in fields and not is_catalog(fields):
                    continue  # a heartbeat only
            if is_catalog(fields):
                report = self._decode_catalog(entry_id, fields)
                if report is not None:
                    reports.append((entry_id, report))
                if ENTRY_FIELD not in fields:
                    continue  # a catalog only (an entry with events too has both read)
            try:
                decoded, rejected = decode_entry(fields)
            except Exception as exc:  # a decoder bug must not make the entry a poison pill
                decoded, rejected = [], [Rejected(f"decoder failed: {exc!r}"[:500], fields)]
            admitted, over = admit(entry_id, decoded)  # stamped with the entry id's time
            events.extend(admitted)
            rejected = [*rejected, *over]
            if rejected:
                self._reject(entry_id, rejected)
        if events and not self._write_with_retry(events):
            return False
        for entry_id, report in reports:
            if not self._write_catalog(entry_id, report):
                return False
        if beats and not self._write_heartbeats(beats):
            return False
        self._call_redis(lambda: self.consumer.ack([entry_id for entry_id, _ in entries]))
        self.stats.entries += len(entries)
        self.stats.events += len(events)
        self.stats.batches += 1
        return True

    def _reject(self, entry_id: bytes, rejected: Sequence[Rejected]) -> None:
        self.stats.rejected += sum(item.count for item in rejected)
        for item in rejected:  # few per entry: the decoders sum up the rest
            many = f" ({item.count} items)" if item.count != 1 else ""
            logger.warning("malformed event in entry %s: %s%s", entry_id.decode(), item.reason,
                           many)  # fmt: skip
        self._call_redis(lambda: self.consumer.dead_letter(entry_id, rejected))

    def _signed(self, entry_id: bytes, fields: dict[bytes, bytes]) -> bool:
        """True when the entry is signed with one of the keys; else it is dead-lettered."""
        try:
            why = verify(fields, self.event_keys, self.consumer.stream)
        except Exception as exc:  # a verifier bug must not make the entry a poison pill
            why = f"signature not checkable: {type(exc).__name__}"
        if why is None:
            return True
        self.stats.unsigned += 1
        self.stats.rejected += 1
        now = time.monotonic()
        start, logged, quiet = self._signature_log
        if now - start >= 60:
            if quiet:
                logger.warning("%d more entries refused for their signature in a minute", quiet)
            start, logged, quiet = now, 0, 0
        if logged < SIGNATURE_LOG_LINES:
            logger.warning("entry %s refused: %s", entry_id.decode(), why)
            logged += 1
        else:
            quiet += 1
        self._signature_log = (start, logged, quiet)
        sample = {name: value[:1024] for name, value in islice(fields.items(), 16)}
        self._call_redis(lambda: self.consumer.dead_letter(entry_id, [Rejected(why, sample)]))
        return False

    def _decode_catalog(self, entry_id: bytes, fields: dict[bytes, bytes]) -> Report | None:
        try:
            decoded = decode_catalog(fields)
        except CatalogError as exc:
            self._reject(entry_id, [Rejected(exc.reason, exc.raw)])
            return None
        except Exception as exc:  # a decoder bug must not make the entry a poison pill
            self._reject(entry_id, [Rejected(f"catalog decoder failed: {exc!r}"[:500], fields)])
            return None
        if decoded.invalid:
            # One dead letter for the lot: a hostile catalog may hold thousands of bad items.
            why, item = decoded.invalid[0]
            count = len(decoded.invalid)
            summary = f"{count} catalog tasks left out; first: {why}"
            self._reject(entry_id, [Rejected(summary, item)])
        return decoded.report

    def _write_catalog(self, entry_id: bytes, report: Report) -> bool:
        """Store one worker's catalog; a catalog the database refuses is dead-lettered."""

        def write() -> None:
            write_catalog(report)
            self.stats.catalogs += 1

        def refused(exc: Exception) -> bool:
            self._reject(entry_id, [Rejected(f"catalog not writable: {exc}"[:500], report)])
            return True

        return self._wait_out_database(write, refused)

    def _decode_heartbeat(self, entry_id: bytes, fields: dict[bytes, bytes]) -> Heartbeat | None:
        try:
            return decode_heartbeat(fields)
        except HeartbeatError as exc:
            self._reject(entry_id, [Rejected(exc.reason, exc.raw)])
        except Exception as exc:  # a decoder bug must not make the entry a poison pill
            self._reject(entry_id, [Rejected(f"heartbeat decoder failed: {exc!r}"[:500], fields)])
        return None

    def _write_heartbeats(self, beats: list[tuple[bytes, Heartbeat]]) -> bool:
        """Store the workers' heartbeats; beats the database refuses are dead-lettered."""

        def write() -> None:
            write_heartbeats([beat for _, beat in beats])
            self.stats.heartbeats += len(beats)

        def refused(exc: Exception) -> bool:
            for entry_id, beat in beats:
                self._reject(entry_id, [Rejected(f"heartbeat not writable: {exc}"[:500], beat)])
            return True

        return self._wait_out_database(write, refused)

    def _write_with_retry(self, events: list[Event]) -> bool:
        def refused(exc: Exception) -> bool:
            # The database is up but refuses this content (or it cannot be converted): find the
            # events at fault.
            logger.warning("batch not writable (%s); writing task by task", exc)
            return self._write_separately(events)

        return self._wait_out_database(
            lambda: write_events(events), refused, close_on_refusal=False
        )

    def _wait_out_database(
        self,
        write: Callable[[], object],
        refused: Callable[[Exception], bool],
        *,
        close_on_refusal: bool = True,
    ) -> bool:
        """Run ``write``, waiting out a database that is down (backing off, until stopped: then
        False, and the entries stay pending); content it refuses goes to ``refused``."""
        backoff = 0.5
        while True:
            try:
                write()
                return True
            except (OperationalError, InterfaceError) as exc:
                self.stats.db_retries += 1
                logger.warning("database unavailable (%s); retrying in %.1fs", exc, backoff)
                connection.close()
            except Exception as exc:
                if close_on_refusal and isinstance(exc, DatabaseError):
                    connection.close()
                return refused(exc)
            if self._stopping.wait(backoff):
                return False
            backoff = min(self.max_backoff, backoff * 2)

    def _write_separately(self, events: list[Event]) -> bool:
        by_task: dict[str, list[Event]] = {}
        for event in events:
            by_task.setdefault(event["task_id"], []).append(event)
        for task_events in by_task.values():
            try:
                write_events(task_events)
            except (OperationalError, InterfaceError):
                connection.close()
                if not self._write_with_retry(task_events):
                    return False
            except Exception as exc:
                if isinstance(exc, DatabaseError):
                    connection.close()
                for event in task_events:
                    self._reject(b"(batch)", [Rejected(f"not writable: {exc}"[:500], event)])
        return True

    # -- redis ------------------------------------------------------------------------------------

    def _call_redis(self, call):
        """Run a Redis call, waiting out connection failures (returns None if stopped meanwhile)."""
        backoff = 0.5
        while True:
            try:
                return call()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                logger.warning("Redis unavailable (%s); retrying in %.1fs", exc, backoff)
            if self._stopping.wait(backoff):
                return None
            backoff = min(self.max_backoff, backoff * 2)

    def _maybe_heartbeat(self, force: bool = False) -> None:
        now = time.time()
        if not force and now - self._last_heartbeat < self.heartbeat_every:
            return
        self._last_heartbeat = now
        try:
            backlog = self.consumer.backlog()
            beat = {"at": now, **vars(self.stats), **backlog}
            self.consumer.client.hset(
                redis_keys.monitors(self.consumer.stream), self.consumer.consumer, json.dumps(beat)
            )
        except redis.RedisError as exc:
            logger.warning("could not write the monitor heartbeat: %s", exc)

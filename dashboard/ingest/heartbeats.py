"""Write workers' heartbeats (``tasktrail.heartbeat``) into ``Worker`` and ``WorkerCounts`` rows.

One row per hostname says what its latest heartbeat said. ``last_heartbeat_at`` is when the
monitor received it, never the sender's clock: a worker whose clock runs ahead cannot stay "alive"
for longer than its beats keep coming, and one behind is not declared gone for it. The start time
it reports is capped at the monitor's clock too.

An incarnation is one run of a worker: its pid and start time. Counters (processed, failed) count
from the incarnation's start, so each minute's ``WorkerCounts`` row adds what grew since the
previous heartbeat of the same incarnation; a new incarnation starts from its own counters. A new
incarnation also means the earlier process died or stopped: its STARTED tasks that began before
the new one and that the new one does not run are LOST (``dashboard.ingest.lost``).

A goodbye makes the worker offline (never gone); tasks it says it still runs then (a cold
shutdown ends them) are LOST, with no incident: the worker stopped, nobody lost it. A heartbeat
of an incarnation that already said goodbye is a late one and is ignored, as is one whose
counters are behind the stored ones (two monitors taking beats out of order).

Cheap by design: one batch of heartbeats costs one locking read of the rows concerned, one write of
them, and one read and one write of the minute's counts; pruning counts older than a day runs at
most every ten minutes.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from dashboard.ingest.lost import mark_lost
from dashboard.models import Worker, WorkerCounts
from tasktrail.heartbeat import Heartbeat

COUNTS_KEPT = dt.timedelta(days=1)
PRUNE_EVERY = 600.0  # seconds of the monitor's clock between two prunes of WorkerCounts

_UPDATED = (
    "status", "app_name", "pid", "pool", "concurrency", "queues", "running", "running_count",
    "processed", "failed", "release", "celery_version", "kombu_version", "python_version",
    "started_at", "last_heartbeat_at", "stopped_at", "gone_at",
)  # fmt: skip
_next_prune = 0.0


@dataclass
class HeartbeatsWritten:
    workers: int = 0
    ignored: int = 0  # late or out-of-order beats
    restarts: int = 0  # a new incarnation replaced an earlier one
    lost: int = 0  # tasks of earlier incarnations marked LOST


def _utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC)


def write_heartbeats(
    beats: Sequence[Heartbeat], now: dt.datetime | None = None
) -> HeartbeatsWritten:
    """Store ``beats`` (in stream order). Raises the database's errors unchanged."""
    now = now or timezone.now()
    written = HeartbeatsWritten()
    if not beats:
        return written
    minute = now.replace(second=0, microsecond=0)
    hosts = list(dict.fromkeys(beat.hostname for beat in beats))
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    restarted: list[tuple[str, dt.datetime, tuple[str, ...]]] = []
    abandoned: list[tuple[str, tuple[str, ...]]] = []
    with transaction.atomic():
        rows = _locked_rows(hosts, now)
        changed: dict[str, Worker] = {}
        for beat in beats:
            row = rows[beat.hostname]
            started_at = _utc(beat.started_at) if beat.started_at < now.timestamp() else now
            same = row.pid == beat.pid and row.started_at == started_at
            if same:
                if row.status == Worker.Status.OFFLINE and not beat.goodbye:
                    written.ignored += 1  # after its goodbye: a late beat, not a return
                    continue
                if beat.processed < row.processed or beat.failed < row.failed:
                    written.ignored += 1  # older than what is stored
                    continue
                delta = (beat.processed - row.processed, beat.failed - row.failed)
            else:
                delta = (beat.processed, beat.failed)
                restarted.append((beat.hostname, started_at, beat.running))
                if row.pid is not None:
                    written.restarts += 1
            if beat.goodbye and beat.running:
                abandoned.append((beat.hostname, beat.running))
            if delta[0] or delta[1]:
                counts[beat.hostname][0] += delta[0]
                counts[beat.hostname][1] += delta[1]
            _apply(row, beat, started_at, now)
            changed[beat.hostname] = row
        if changed:
            Worker.objects.bulk_update(list(changed.values()), list(_UPDATED))
        _add_counts(counts, minute)
        for hostname, started_at, running in restarted:
            written.lost += mark_lost(hostname, started_before=started_at, keep=running)
        for hostname, running in abandoned:
            written.lost += mark_lost(hostname, only=running)
    written.workers = len(changed)
    _maybe_prune(now)
    return written


def _locked_rows(hosts: list[str], now: dt.datetime) -> dict[str, Worker]:
    """The rows of ``hosts``, locked for this transaction; missing ones are created first (another
    monitor creating the same row at once is not an error)."""
    rows = Worker.objects.select_for_update().filter(hostname__in=hosts).order_by("hostname")
    found = {row.hostname: row for row in rows}
    missing = [host for host in hosts if host not in found]
    if missing:
        Worker.objects.bulk_create(
            [Worker(hostname=h, first_seen_at=now, last_heartbeat_at=now) for h in missing],
            ignore_conflicts=True,
        )
        more = Worker.objects.select_for_update().filter(hostname__in=missing)
        found.update({row.hostname: row for row in more.order_by("hostname")})
    return found


def _apply(row: Worker, beat: Heartbeat, started_at: dt.datetime, now: dt.datetime) -> None:
    row.status = Worker.Status.OFFLINE if beat.goodbye else Worker.Status.ONLINE
    row.app_name = beat.app
    row.pid = beat.pid
    row.pool = beat.pool
    row.concurrency = beat.concurrency
    row.queues = list(beat.queues)
    row.running = list(beat.running)
    row.running_count = beat.running_count
    row.processed = beat.processed
    row.failed = beat.failed
    row.release = beat.release
    row.celery_version = beat.celery
    row.kombu_version = beat.kombu
    row.python_version = beat.python
    row.started_at = started_at
    row.last_heartbeat_at = now
    row.stopped_at = now if beat.goodbye else None
    row.gone_at = None  # a heartbeat brings a gone worker back


def _add_counts(counts: dict[str, list[int]], minute: dt.datetime) -> None:
    """Add this batch's deltas to the minute's rows (the worker rows are locked meanwhile, so two
    monitors do not add the same host's minute at once)."""
    if not counts:
        return
    stored = WorkerCounts.objects.filter(hostname__in=list(counts), minute=minute)
    for hostname, processed, failed in stored.values_list("hostname", "processed", "failed"):
        counts[hostname][0] += processed
        counts[hostname][1] += failed
    WorkerCounts.objects.bulk_create(
        [
            WorkerCounts(hostname=host, minute=minute, processed=p, failed=f)
            for host, (p, f) in counts.items()
        ],
        update_conflicts=True,
        unique_fields=["hostname", "minute"],
        update_fields=["processed", "failed"],
    )


def _maybe_prune(now: dt.datetime) -> None:
    global _next_prune
    if time.monotonic() < _next_prune:
        return
    _next_prune = time.monotonic() + PRUNE_EVERY
    WorkerCounts.objects.filter(minute__lt=now - COUNTS_KEPT).delete()

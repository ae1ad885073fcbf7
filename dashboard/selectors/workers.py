"""The shop's workers as their own heartbeats last described them, for the Workers page.

Every figure comes from rows the monitor wrote: ``Worker`` (one per hostname, upserted from each
heartbeat), ``WorkerCounts`` (finished / failed per worker per minute), ``RegisteredTask`` (the
task catalog each worker reports) and ``TaskRun``. The page never asks a worker or the broker.

Every query is bounded: workers by status on the ``worker_status`` index (capped per status, and
stopped or gone ones only for a day), the last hour's counts on the minute index for the listed
hostnames only, and the unregistered-name check on ``taskrun_state_recent`` over the last hour's
waiting rows, at most ``UNREGISTERED_ROWS`` of them.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from django.db.models import Count, Sum
from django.utils import timezone

from dashboard.models import RegisteredTask, TaskRun, TaskState, Worker, WorkerCounts

ONLINE: Final = Worker.Status.ONLINE.value
OFFLINE: Final = Worker.Status.OFFLINE.value
GONE: Final = Worker.Status.GONE.value
# Gone first: what the person on call looks for. Then the live ones, then the clean stops.
STATUS_ORDER: Final = (GONE, ONLINE, OFFLINE)
LISTED: Final[dict[str, int]] = {ONLINE: 500, GONE: 100, OFFLINE: 100}
STOPPED_SHOWN_FOR: Final = dt.timedelta(days=1)  # gone / offline workers older than this: counted
COUNTS_WINDOW: Final = dt.timedelta(hours=1)
MAX_RUNNING_LINKS: Final = 10  # running task ids linked per worker; the count says how many
MAX_QUEUES: Final = 50  # queue names shown per worker (a heartbeat is untrusted input)
MAX_HOSTNAMES: Final = 10  # hostnames named per release in the banner
UNREGISTERED_WINDOW: Final = dt.timedelta(hours=1)
UNREGISTERED_ROWS: Final = 1000  # newest waiting rows read for the check
MAX_UNREGISTERED_NAMES: Final = 20
MAX_NAME_QUEUES: Final = 3


@dataclass(frozen=True)
class WorkerInfo:
    hostname: str
    status: str
    status_label: str
    app_name: str
    pid: int | None
    pool: str
    concurrency: int | None
    queues: tuple[str, ...]
    queues_more: int  # queue names beyond MAX_QUEUES
    running: tuple[str, ...]  # task ids to link, at most MAX_RUNNING_LINKS
    running_count: int
    processed_last_hour: int
    failed_last_hour: int
    release: str
    celery_version: str
    kombu_version: str
    python_version: str
    started_at: dt.datetime | None
    last_heartbeat_at: dt.datetime
    stopped_at: dt.datetime | None
    gone_at: dt.datetime | None
    uptime: float | None  # seconds: until now while online, until it stopped or went quiet after

    @property
    def running_more(self) -> int:
        return max(0, self.running_count - len(self.running))


@dataclass(frozen=True)
class WorkerGroup:
    status: str
    label: str
    workers: list[WorkerInfo]
    total: int  # every row of this status, listed or not

    @property
    def not_listed(self) -> int:
        return max(0, self.total - len(self.workers))


@dataclass(frozen=True)
class ReleaseGroup:
    release: str  # "" when the worker reports none (TASKTRAIL_APP_VERSION unset)
    count: int
    hostnames: tuple[str, ...]  # at most MAX_HOSTNAMES, sorted

    @property
    def hostnames_more(self) -> int:
        return max(0, self.count - len(self.hostnames))


@dataclass(frozen=True)
class ReleaseMix:
    """Live workers of one app running different releases: most common release first."""

    app_name: str
    releases: tuple[ReleaseGroup, ...]


@dataclass(frozen=True)
class UnregisteredName:
    name: str
    waiting: int  # among the rows read (see UnregisteredCheck.capped)
    oldest: dt.datetime
    queues: tuple[str, ...]


@dataclass(frozen=True)
class UnregisteredCheck:
    names: list[UnregisteredName]  # most waiting first, at most MAX_UNREGISTERED_NAMES
    more_names: bool
    capped: bool  # the row cap was reached: counts are "at least"
    any_online: bool


@dataclass(frozen=True)
class WorkersOverview:
    groups: list[WorkerGroup]  # gone, online, offline; groups with no row left out
    release_mixes: list[ReleaseMix]
    unregistered: UnregisteredCheck | None  # None: no worker has ever sent a heartbeat

    @property
    def empty(self) -> bool:
        return not self.groups


def _texts(value: Any, limit: int) -> tuple[tuple[str, ...], int]:
    """Strings from a JSON list a heartbeat filled (anything else: none), at most ``limit``."""
    if not isinstance(value, list):
        return (), 0
    items = [v for v in value if isinstance(v, str) and v]
    return tuple(items[:limit]), max(0, len(items) - limit)


def _uptime(worker: Worker, now: dt.datetime) -> float | None:
    if worker.started_at is None:
        return None
    if worker.status == ONLINE:
        until = now
    elif worker.status == OFFLINE:
        until = worker.stopped_at or worker.last_heartbeat_at
    else:  # gone: it ran until its last heartbeat, as far as anyone knows
        until = worker.last_heartbeat_at
    return max(0.0, (until - worker.started_at).total_seconds())


def last_hour_counts(
    hostnames: Iterable[str], now: dt.datetime | None = None
) -> dict[str, tuple[int, int]]:
    """Processed and failed per hostname over the minutes of the last hour: the sum of its
    WorkerCounts rows (deltas per minute), read on the minute index."""
    names = sorted(set(hostnames))
    if not names:
        return {}
    since = (now or timezone.now()) - COUNTS_WINDOW
    rows = (
        WorkerCounts.objects.filter(minute__gt=since, hostname__in=names)
        .values("hostname")
        .annotate(processed=Sum("processed"), failed=Sum("failed"))
        .values_list("hostname", "processed", "failed")
    )
    return {hostname: (processed or 0, failed or 0) for hostname, processed, failed in rows}


def _info(worker: Worker, counts: dict[str, tuple[int, int]], now: dt.datetime) -> WorkerInfo:
    queues, queues_more = _texts(worker.queues, MAX_QUEUES)
    running, _ = _texts(worker.running, MAX_RUNNING_LINKS)
    processed, failed = counts.get(worker.hostname, (0, 0))
    return WorkerInfo(
        hostname=worker.hostname,
        status=worker.status,
        status_label=Worker.Status(worker.status).label
        if worker.status in Worker.Status.values
        else worker.status,
        app_name=worker.app_name,
        pid=worker.pid,
        pool=worker.pool,
        concurrency=worker.concurrency,
        queues=queues,
        queues_more=queues_more,
        running=running,
        running_count=max(worker.running_count or 0, len(running)),
        processed_last_hour=processed,
        failed_last_hour=failed,
        release=worker.release,
        celery_version=worker.celery_version,
        kombu_version=worker.kombu_version,
        python_version=worker.python_version,
        started_at=worker.started_at,
        last_heartbeat_at=worker.last_heartbeat_at,
        stopped_at=worker.stopped_at,
        gone_at=worker.gone_at,
        uptime=_uptime(worker, now),
    )


def _listed(status: str, now: dt.datetime) -> list[Worker]:
    rows = Worker.objects.filter(status=status)
    if status != ONLINE:
        rows = rows.filter(last_heartbeat_at__gte=now - STOPPED_SHOWN_FOR)
    return list(rows.order_by("-last_heartbeat_at", "hostname")[: LISTED[status]])


def release_mixes(workers: Sequence[WorkerInfo]) -> list[ReleaseMix]:
    """Per app, the releases its live workers run, when there is more than one."""
    by_app: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for worker in workers:
        if worker.status == ONLINE:
            by_app[worker.app_name][worker.release].append(worker.hostname)
    mixes = []
    for app_name in sorted(by_app):
        releases = by_app[app_name]
        if len(releases) < 2:
            continue
        ordered = sorted(releases.items(), key=lambda item: (-len(item[1]), item[0]))
        mixes.append(
            ReleaseMix(
                app_name=app_name,
                releases=tuple(
                    ReleaseGroup(
                        release=release,
                        count=len(hosts),
                        hostnames=tuple(sorted(hosts)[:MAX_HOSTNAMES]),
                    )
                    for release, hosts in ordered
                ),
            )
        )
    return mixes


def unregistered_task_names(now: dt.datetime | None = None) -> UnregisteredCheck:
    """Task names of tasks published in the last hour and still waiting (PENDING) that no online
    worker has registered: published to a queue no up-to-date worker can run them from.

    One query: the newest waiting rows of the last hour on ``taskrun_state_recent`` (at most
    ``UNREGISTERED_ROWS``), minus the names registered by online workers (a subquery on the small
    catalog), grouped here."""
    now = now or timezone.now()
    online = Worker.objects.filter(status=ONLINE).values("hostname")
    registered = RegisteredTask.objects.filter(hostname__in=online).values("name")
    rows = list(
        TaskRun.objects.filter(
            state=TaskState.PENDING, first_seen_at__gte=now - UNREGISTERED_WINDOW
        )
        .exclude(name__isnull=True)
        .exclude(name__in=registered)
        .order_by("-first_seen_at", "-id")
        .values_list("name", "first_seen_at", "queue")[:UNREGISTERED_ROWS]
    )
    waiting: Counter[str] = Counter()
    oldest: dict[str, dt.datetime] = {}
    queues: dict[str, set[str]] = defaultdict(set)
    for name, first_seen, queue in rows:
        if not name:  # excluded by the query; for the type checker
            continue
        waiting[name] += 1
        oldest[name] = min(first_seen, oldest.get(name, first_seen))
        if queue:
            queues[name].add(queue)
    ordered = sorted(waiting, key=lambda name: (-waiting[name], name))
    return UnregisteredCheck(
        names=[
            UnregisteredName(
                name=name,
                waiting=waiting[name],
                oldest=oldest[name],
                queues=tuple(sorted(queues[name])[:MAX_NAME_QUEUES]),
            )
            for name in ordered[:MAX_UNREGISTERED_NAMES]
        ],
        more_names=len(ordered) > MAX_UNREGISTERED_NAMES,
        capped=len(rows) >= UNREGISTERED_ROWS,
        any_online=online.exists(),
    )


def workers_overview(now: dt.datetime | None = None) -> WorkersOverview:
    now = now or timezone.now()
    totals = dict(
        Worker.objects.values("status").annotate(n=Count("id")).values_list("status", "n")
    )
    if not totals:
        return WorkersOverview(groups=[], release_mixes=[], unregistered=None)
    listed = {status: _listed(status, now) for status in STATUS_ORDER if totals.get(status)}
    counts = last_hour_counts((w.hostname for rows in listed.values() for w in rows), now)
    groups = []
    for status, rows in listed.items():
        infos = [_info(w, counts, now) for w in rows]
        if status == ONLINE:  # a stable order to read; the others newest first
            infos.sort(key=lambda w: (w.app_name, w.hostname))
        groups.append(
            WorkerGroup(
                status=status,
                label=Worker.Status(status).label,
                workers=infos,
                total=totals[status],
            )
        )
    online = next((g.workers for g in groups if g.status == ONLINE), [])
    return WorkersOverview(
        groups=groups,
        release_mixes=release_mixes(online),
        unregistered=unregistered_task_names(now),
    )

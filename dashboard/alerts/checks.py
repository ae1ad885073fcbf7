"""Gather the figures the rules need: from the broker, the workers and the database.

Redis: one pipelined round trip reads every queue's depth and oldest message, the timed-condition
clocks and the stream's backlog; a second one writes the clocks back with the snapshot the pages
read. The list of queues (a SCAN over kombu's bindings) is refreshed every 30 s, not every cycle.

Workers: Celery's remote control (``inspect().active_queues()``) says who consumes what. It costs a
broadcast and a wait for replies, so in the monitor it runs in a background thread
(``BackgroundProbe``) and the check reads the latest answer; a stale or failed answer counts as
"unknown", which never fires and never resolves anything.

Timed conditions ("no consumer for 60 s") keep their start time in a Redis hash, so they survive a
monitor restart and several monitors agree on them.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis
from django.db.models import Count, Q

from dashboard import redis_keys
from dashboard.alerts import rules
from dashboard.ingest.stream import GROUP
from dashboard.models import TaskRun, TaskState
from workers.broker import add_depth_commands, depth_command_count, known_queues, parse_depths

logger = logging.getLogger("tasktrail.alerts")

QUEUE_LIST_SECONDS = 30.0  # how long the list of known queues is reused (a SCAN)
RATE_WINDOW = dt.timedelta(minutes=5)  # finished per minute is averaged over this
LOST_TASKS_KEPT = dt.timedelta(hours=24)  # lost, not retried tasks keep a worker incident open
OVERDUE_ROWS_MAX = 1000
CELERY_LIMIT_GRACE = 30.0  # a task past its hard time limit is killed; allow for the kill's event


# -- workers ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkersSeen:
    """The workers that answered, and the queues each consumes."""

    at: float
    queues: Mapping[str, tuple[str, ...]]

    def consumers(self, queue: str) -> int:
        return sum(1 for names in self.queues.values() if queue in names)


Probe = Callable[[], WorkersSeen | None]


class WorkerProbe:
    """Ask the workers, now (a broadcast, then ``timeout`` seconds of waiting for replies)."""

    def __init__(self, app: Any = None, timeout: float = 1.0) -> None:
        self.app = app
        self.timeout = timeout

    def __call__(self) -> WorkersSeen | None:
        app = self.app
        if app is None:
            from workers.celery_app import app
        try:
            replies = app.control.inspect(timeout=self.timeout).active_queues() or {}
        except Exception as exc:  # broker away: unknown, not "no workers"
            logger.warning("could not ask the workers for their queues: %s", exc)
            return None
        return WorkersSeen(
            at=time.time(),
            queues={
                str(host): tuple(str(q.get("name")) for q in queues or [] if isinstance(q, dict))
                for host, queues in replies.items()
            },
        )


class BackgroundProbe:
    """Runs a probe every ``every`` seconds in a daemon thread; calling it returns the latest
    answer, or None when there is none younger than ``3 * every + 5`` s (the probe is stuck)."""

    def __init__(self, probe: Probe, every: float) -> None:
        self.probe = probe
        self.every = every
        self._latest: WorkersSeen | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tasktrail-probe", daemon=True)

    def start(self) -> BackgroundProbe:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            answer = self.probe()
            if answer is not None:
                self._latest = answer
            self._stop.wait(self.every)

    def __call__(self) -> WorkersSeen | None:
        latest = self._latest
        if latest is None or time.time() - latest.at > 3 * self.every + 5:
            return None
        return latest


# -- Redis time ------------------------------------------------------------------------------------


@dataclass
class RedisTimer:
    """Wall time spent in Redis calls during one check (the bench reports it)."""

    seconds: float = 0.0
    round_trips: int = 0

    @contextmanager
    def measure(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - start
            self.round_trips += 1


# -- figures ---------------------------------------------------------------------------------------


@dataclass
class BrokerFigures:
    depths: dict[str, tuple[int, float | None]]  # queue -> (depth, oldest age)
    since: dict[str, float]  # "condition:subject" -> start
    workers_seen: dict[str, float]  # hostname -> last answered
    lag_seconds: float | None
    lag_entries: int | None


def read_broker(
    client: redis.Redis, stream: str, names: Sequence[str], now: float, timer: RedisTimer
) -> BrokerFigures:
    """Everything read from Redis in one pipelined round trip."""
    pipe = client.pipeline(transaction=False)
    add_depth_commands(pipe, names)
    pipe.hgetall(redis_keys.alert_since(stream))
    pipe.hgetall(redis_keys.alert_workers(stream))
    pipe.xrange(stream, count=1)  # acknowledged entries are deleted: this is the oldest unwritten
    pipe.xinfo_groups(stream)
    with timer.measure():
        replies = pipe.execute(raise_on_error=False)
    n = depth_command_count(names)
    depth_replies = replies[:n]
    for reply in depth_replies:
        if isinstance(reply, Exception):
            raise reply
    since_raw, seen_raw, first, groups = replies[n:]
    depths = {d.name: (d.depth, d.oldest_age(now)) for d in parse_depths(names, depth_replies)}
    lag_entries, lag_seconds = parse_stream_lag(first, groups, now)
    return BrokerFigures(
        depths=depths,
        since=_float_hash(since_raw),
        workers_seen=_float_hash(seen_raw),
        lag_seconds=lag_seconds,
        lag_entries=lag_entries,
    )


def parse_stream_lag(first: Any, groups: Any, now: float) -> tuple[int | None, float | None]:
    """From ``XRANGE stream - + COUNT 1`` and ``XINFO GROUPS stream`` replies: entries the
    monitors have not read, and the age of the oldest entry not yet written (acknowledged entries
    are deleted, so the first one left is the oldest unwritten). None: could not tell."""
    seconds = None
    if isinstance(first, list):
        seconds = 0.0
        if first:
            entry_id = first[0][0]
            text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            seconds = max(0.0, now - int(text.split("-")[0]) / 1000)
    entries = None
    if isinstance(groups, list):
        entries = 0
        for group in groups:
            name = group.get("name")
            if (name.decode() if isinstance(name, bytes) else name) == GROUP:
                entries = int(group.get("lag") or 0)
    elif first == []:
        entries = 0  # no stream yet: nothing behind
    return entries, seconds


def _float_hash(raw: Any) -> dict[str, float]:
    if not isinstance(raw, dict):
        return {}
    out = {}
    for key, value in raw.items():
        try:
            out[key.decode() if isinstance(key, bytes) else str(key)] = float(value)
        except (TypeError, ValueError):
            continue
    return out


class QueueList:
    """Known queues (kombu bindings plus configured ones), re-read every ``every`` seconds."""

    def __init__(self, extra: Callable[[], set[str]], every: float = QUEUE_LIST_SECONDS) -> None:
        self.extra = extra
        self.every = every
        self._names: list[str] = []
        self._read_at = float("-inf")

    def get(self, client: redis.Redis, timer: RedisTimer) -> list[str]:
        if time.monotonic() - self._read_at >= self.every:
            with timer.measure():
                self._names = known_queues(client, extra=self.extra())
            self._read_at = time.monotonic()
        return self._names


def finished_per_queue(
    names: Sequence[str], windows: Sequence[float], now: dt.datetime
) -> dict[str, dict[str, int]]:
    """Per queue: tasks finished within each window (seconds) and within ``RATE_WINDOW``."""
    if not names:
        return {}
    longest = max([*windows, RATE_WINDOW.total_seconds()])
    counts = {
        f"w{int(w)}": Count("id", filter=Q(finished_at__gte=now - dt.timedelta(seconds=w)))
        for w in windows
    }
    counts["rate"] = Count("id", filter=Q(finished_at__gte=now - RATE_WINDOW))
    rows = (
        TaskRun.objects.filter(
            finished_at__gte=now - dt.timedelta(seconds=longest), queue__in=names
        )
        .values("queue")
        .annotate(**counts)
    )
    out: dict[str, dict[str, int]] = {}
    for row in rows:
        values: dict[str, Any] = dict(row)
        queue = str(values.pop("queue"))
        out[queue] = {k: int(v) for k, v in values.items()}
    return out


def running_tasks(
    now: dt.datetime, limit_for: Callable[[str], float], shortest: float
) -> list[rules.RunningTask]:
    """STARTED tasks that have run at least ``shortest`` seconds, with the limit for each."""
    rows = (
        TaskRun.objects.filter(
            state=TaskState.STARTED,
            started_at__lt=now - dt.timedelta(seconds=shortest),
        )
        .order_by("started_at")
        .values_list("task_id", "name", "worker", "started_at")[:OVERDUE_ROWS_MAX]
    )
    return [
        rules.RunningTask(
            task_id=task_id,
            name=name or "(unknown task)",
            worker=worker,
            runtime=(now - started_at).total_seconds(),
            limit=limit_for(name or ""),
        )
        for task_id, name, worker, started_at in rows
        if started_at is not None
    ]


def unfinished_per_worker(now: dt.datetime) -> dict[str, tuple[int, int]]:
    """Worker -> (tasks STARTED, tasks LOST in the last day and not retried)."""
    rows = (
        TaskRun.objects.filter(
            Q(state=TaskState.STARTED)
            | Q(
                state=TaskState.LOST, retried_as__isnull=True, started_at__gte=now - LOST_TASKS_KEPT
            )
        )
        .exclude(worker__isnull=True)
        .values("worker", "state")
        .annotate(n=Count("id"))
    )
    out: dict[str, tuple[int, int]] = {}
    for row in rows:
        worker = str(row["worker"])
        running, lost = out.get(worker, (0, 0))
        if row["state"] == TaskState.STARTED:
            running += row["n"]
        else:
            lost += row["n"]
        out[worker] = (running, lost)
    return out


def mark_lost(worker: str) -> int:
    """The worker's STARTED tasks become LOST (retryable). Any later event of a task outranks it."""
    return TaskRun.objects.filter(worker=worker, state=TaskState.STARTED).update(
        state=TaskState.LOST
    )


class TaskLimits:
    """The runtime limit of a task: the setting, else its Celery time limit, else the default."""

    def __init__(self, thresholds: rules.Thresholds, app: Any = None) -> None:
        self.thresholds = thresholds
        self.app = app
        self._cache: dict[str, float] = {}

    def _celery_limit(self, name: str) -> float | None:
        app = self.app
        if app is None:
            return None
        task = app.tasks.get(name)
        limits = [
            getattr(task, "time_limit", None),
            getattr(task, "soft_time_limit", None),
            app.conf.task_time_limit,
            app.conf.task_soft_time_limit,
        ]
        found = [float(x) for x in limits if isinstance(x, int | float) and x > 0]
        return max(found) + CELERY_LIMIT_GRACE if found else None

    def __call__(self, name: str) -> float:
        limit = self._cache.get(name)
        if limit is None:
            if name in self.thresholds.tasks:
                limit = self.thresholds.tasks[name]
            else:
                limit = self._celery_limit(name) or self.thresholds.task_max_runtime_seconds
            self._cache[name] = limit
        return limit

    def shortest(self) -> float:
        """A lower bound of every limit, to read only the STARTED rows that may be over one."""
        candidates = [self.thresholds.task_max_runtime_seconds, *self.thresholds.tasks.values()]
        if self.app is not None:
            candidates += [self(name) for name in list(self.app.tasks)]
        positive = [c for c in candidates if c > 0]
        return min(positive) if positive else float("inf")


# -- timed conditions ------------------------------------------------------------------------------


@dataclass
class ClockUpdate:
    """Writes for the condition clock hash, made in the second pipeline."""

    start: dict[str, float] = field(default_factory=dict)  # HSETNX
    clear: list[str] = field(default_factory=list)  # HDEL


def held_for(
    since: Mapping[str, float],
    conditions: Mapping[str, bool | None],
    now: float,
    update: ClockUpdate,
) -> dict[str, float]:
    """Seconds each condition (``"name:subject"``) has held; records starts and ends in
    ``update``. An unknown condition (None) keeps its clock but is not reported as holding."""
    held: dict[str, float] = {}
    for key, holds in conditions.items():
        if holds is None:
            continue
        if holds:
            start = since.get(key)
            if start is None:
                update.start[key] = now
                start = now
            held[key] = max(0.0, now - start)
        elif key in since:
            update.clear.append(key)
    return held


def write_state(
    client: redis.Redis,
    stream: str,
    update: ClockUpdate,
    workers_seen: Mapping[str, float],
    workers_forget: Sequence[str],
    snapshot: Mapping[str, Any],
    ttl: int,
    timer: RedisTimer,
) -> None:
    pipe = client.pipeline(transaction=False)
    since = redis_keys.alert_since(stream)
    for key, start in update.start.items():
        pipe.hsetnx(since, key, start)  # another monitor's earlier start wins
    if update.clear:
        pipe.hdel(redis_keys.alert_since(stream), *update.clear)
    for host, seen in workers_seen.items():
        pipe.hset(redis_keys.alert_workers(stream), host, seen)
    if workers_forget:
        pipe.hdel(redis_keys.alert_workers(stream), *workers_forget)
    pipe.set(redis_keys.alert_snapshot(stream), json.dumps(snapshot), ex=ttl)
    with timer.measure():
        pipe.execute()


def now_datetime(now: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(now, tz=dt.UTC)

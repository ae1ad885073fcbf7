"""Retention: pruning E expired tasks beside K kept ones while the monitor ingests and pages load.

    python -m bench.retention [--quick] [--expired 1000000] [--kept 1000000] [--json PATH]

PostgreSQL only (``BENCH_RETENTION_DATABASE_URL``, default the local server, database
``bench_retention``) and a Redis (``REDIS_URL``). The rows are generated in SQL once into a seed
database (``<name>_seed_<E>_<K>``: TaskRun, TaskAttempt, django-celery-results' TaskResult, then
VACUUM ANALYZE, as on a server whose autovacuum has caught up) and copied for every run with
``CREATE DATABASE … TEMPLATE`` (a file copy: seconds), because pruning consumes the expired rows.
A seed older than ``SEED_MAX_AGE``, of other sizes or made before a migration changed is
generated again.

Rows, relative to the seed's time: E expired tasks 45-75 days old (every kind of task past the
default policy: 14 days for successes, 30 for failures and unfinished ones), K kept tasks 1-13 days
old plus K/10 (100,000 at K = 1M) in the last 24 hours; states as in ``bench.pages`` (85% success,
8% failure, ...); one task in ten has a second attempt. TaskResult rows for every kept task (the
admin comparison's rows) and for one expired task in two.

One ``manage.py monitor --no-alerts`` is kept busy by a stream topped up the whole time
(``Feeder``). After a warm-up, windows without pruning alternate with ``prune_pass`` runs in a
process of their own (default policy and batch size, ``--segment`` seconds each by their deadline,
as the monitor's pruning thread runs them, but beside the monitor rather than inside its process:
the monitor runs with that thread off), until a pass completes; a window without pruning ends
the series. Meanwhile a page process requests the Tasks list's first page and a kept task's page
every 100 ms, ``pg_locks`` is sampled every 50 ms for lock waits of every session of the database
(by ``application_name``), and the monitor's RSS is sampled. Then the run's ingested rows are
deleted, VACUUM ANALYZE runs (timed, not counted in the pruning), and the pages are timed at the K
kept rows beside django-celery-results' admin on the same rows (``bench.pages``' method), the
overview with the figures a monitor's check counts stored first.

Children of this module: ``--role prune`` (one pass, JSON out) and ``--role poll`` (the pages in a
loop until SIGTERM, JSON out).
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import dataclasses
import hashlib
import itertools
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Final
from urllib.parse import urlencode, urlsplit, urlunsplit

DEFAULT_URL: Final = "postgres://postgres@127.0.0.1:5432/bench_retention"
RESULTS: Final = Path(__file__).resolve().parent / "results"
ROOT: Final = Path(__file__).resolve().parent.parent
SEED_VERSION: Final = 1
SEED_MAX_AGE: Final = 6 * 3600.0  # the "last 24 hours" drifts; kept successes must stay < 14 days
RECENT_SHARE: Final = 10  # one kept task in ten is from the last 24 hours
RESULTS_EVERY: Final = 2  # expired tasks with a TaskResult row: one in two
EXPIRED_DAYS: Final = (45.0, 75.0)
KEPT_DAYS: Final = 13.0
QUICK_ROWS: Final = 50_000

# Goals of the issue
INGEST_RATIO_GOAL: Final = 0.8  # ingest while pruning / ingest without, same load
LOCK_WAIT_GOAL_S: Final = 1.0  # longest lock wait a page or the monitor saw during the pass
RSS_FLAT_GOAL: Final = 1.25  # monitor peak RSS during the pass / before it

BASE_EVENTS: Final = 100_000  # events built once; later generations rename their task ids
TOP_UP_BELOW: Final = 400  # stream entries: the monitor reads 200 per batch, never runs dry
TOP_UP_ENTRIES: Final = 200
PROGRESS_SECONDS: Final = 0.02
LOCK_SAMPLE_SECONDS: Final = 0.05
RSS_SAMPLE_SECONDS: Final = 0.2
POLL_INTERVAL: Final = 0.1
PRUNE_TIMEOUT: Final = 1800.0

APP_MONITOR: Final = "bench-monitor"
APP_PRUNE: Final = "bench-prune"
APP_PAGES: Final = "bench-pages"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] retention: {message}", file=sys.stderr, flush=True)


def with_app_name(url: str, name: str) -> str:
    """The same database URL, its sessions named in ``pg_stat_activity`` (who waited on a lock)."""
    return urlunsplit(urlsplit(url)._replace(query=urlencode({"application_name": name})))


def _db_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def _with_db(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}", query=""))


# -- seed database -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seed:
    expired: int
    kept: int
    generated_at: float  # epoch seconds the rows' ages are relative to
    generated_seconds: float | None  # this run generated it; None: reused

    @property
    def recent(self) -> int:
        return self.kept // RECENT_SHARE

    def task_id_sql(self, n: str) -> str:
        return f"md5('t' || {n})::uuid::text"


def _connect(url: str) -> Any:
    import psycopg

    return psycopg.connect(url, autocommit=True)


def _admin(url: str) -> Any:
    return _connect(_with_db(url, "postgres"))


def _seed_meta(url: str, seed_name: str) -> dict[str, Any] | None:
    with _admin(url) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            [seed_name],
        ).fetchone()
    if row is None or not row[0]:
        return None
    try:
        meta = json.loads(row[0])
    except ValueError:
        return None
    return meta if isinstance(meta, dict) else None


def _seed_name(url: str, expired: int, kept: int) -> str:
    return f"{_db_name(url)}_seed_{expired}_{kept}"


def _schema() -> str:
    """A fingerprint of the service's migrations: a seed made before one changed is made again
    (its tables and indexes must be the ones being measured)."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "dashboard" / "migrations").glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _migrate(url: str) -> None:
    env = dict(os.environ, DATABASE_URL=url, DJANGO_SETTINGS_MODULE="dashboard.settings")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT, env=env, check=True
    )


def ensure_seed(url: str, *, expired: int, kept: int, regenerate: bool) -> Seed:
    """The seed database with these sizes, generated if missing, stale or of other sizes."""
    seed_name = _seed_name(url, expired, kept)
    seed_url = _with_db(url, seed_name)
    meta = _seed_meta(url, seed_name)
    fresh = (
        meta is not None
        and meta.get("version") == SEED_VERSION
        and meta.get("expired") == expired
        and meta.get("kept") == kept
        and meta.get("schema") == _schema()
        and time.time() - float(meta.get("generated_at", 0)) < SEED_MAX_AGE
    )
    if fresh and not regenerate:
        assert meta is not None
        return Seed(expired, kept, float(meta["generated_at"]), None)
    started = time.perf_counter()
    with _admin(url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{seed_name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{seed_name}"')
    _migrate(seed_url)
    generated_at = time.time()
    seed = Seed(expired, kept, generated_at, None)
    _generate(seed_url, seed)
    seconds = time.perf_counter() - started
    meta = {
        "version": SEED_VERSION,
        "expired": expired,
        "kept": kept,
        "generated_at": generated_at,
        "schema": _schema(),
    }
    with _admin(url) as conn:
        conn.execute(f"COMMENT ON DATABASE \"{seed_name}\" IS '{json.dumps(meta)}'")
    return dataclasses.replace(seed, generated_seconds=seconds)


def _generate(seed_url: str, seed: Seed) -> None:
    """Insert the rows with the secondary indexes dropped, then build them again (much faster
    than maintaining eleven indexes row by row), then VACUUM ANALYZE."""
    import psycopg

    from bench.pages import NAMES, QUEUES

    names = "ARRAY[" + ",".join(f"'{n}'" for n in NAMES) + "]"
    queues = "ARRAY[" + ",".join(f"'{q}'" for q in QUEUES) + "]"
    e, k, r, g = seed.expired, seed.kept, seed.recent, seed.generated_at
    old_first, old_span = EXPIRED_DAYS[0] * 86400, (EXPIRED_DAYS[1] - EXPIRED_DAYS[0]) * 86400
    # Age in seconds of task n (1..E expired, oldest first; then 1..K kept, the last R in 24 h).
    age = f"""CASE
        WHEN n <= {e} THEN {old_first} + ({e} - n) * {old_span / max(e, 1)}
        WHEN n > {e + k - r} THEN ({e + k} - n) * {86400.0 / max(r, 1)}
        ELSE 86400 + ({e + k - r} - n) * {(KEPT_DAYS - 1) * 86400 / max(k - r, 1)} END"""
    state = """CASE WHEN n % 100 < 85 THEN 'SUCCESS' WHEN n % 100 < 93 THEN 'FAILURE'
        WHEN n % 100 < 95 THEN 'RETRY' WHEN n % 100 < 97 THEN 'PENDING'
        WHEN n % 100 < 98 THEN 'STARTED' ELSE 'REVOKED' END"""
    finished = "(n % 100 < 93 OR n % 100 >= 98)"
    tables = ("dashboard_taskrun", "dashboard_taskattempt", "django_celery_results_taskresult")
    with psycopg.connect(seed_url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        indexes = conn.execute(
            """SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
            FROM pg_index i WHERE i.indrelid = ANY(%s::regclass[]) AND NOT EXISTS
                (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)""",
            [list(tables)],
        ).fetchall()
        for name, _ in indexes:
            conn.execute(f"DROP INDEX {name}")
        t0 = time.perf_counter()
        conn.execute(f"""
            CREATE TEMP TABLE bench_src AS
            SELECT n, {seed.task_id_sql("n")} AS tid,
                to_timestamp({g}) - make_interval(secs => {age}) AS ts
            FROM generate_series(1, {e + k}) AS n""")
        conn.execute(f"""
            INSERT INTO dashboard_taskrun (task_id, name, queue, input_id, state, retries,
                exc_type, exc_message, first_seen_at, published_at, started_at, finished_at,
                updated_at, worker, runtime, queue_wait, args, kwargs, arg_names, trace_id,
                state_key, worker_key, start_key, error_key)
            SELECT tid, ({names})[1 + n % 20], ({queues})[1 + (n / 7) % 3],
                CASE n % 3 WHEN 0 THEN 'ORD-' WHEN 1 THEN 'SKU-' ELSE 'PAY-' END || (n / 3),
                {state}, (n % 10 = 5)::int,
                CASE WHEN n % 100 BETWEEN 85 AND 92 THEN 'ValueError' END,
                CASE WHEN n % 100 BETWEEN 85 AND 92 THEN 'failed on item ' || n END,
                ts, ts, ts + interval '0.2 s',
                CASE WHEN {finished} THEN ts + interval '0.5 s' END,
                ts + interval '0.5 s', 'celery@worker-' || (n % 8), 0.3 + (n % 17) / 10.0, 0.2,
                '[' || (n / 3) || ']', '{{}}', 'id', md5(n::text), 0, 0, 0, -1
            FROM bench_src ORDER BY n""")
        conn.execute(f"""
            INSERT INTO dashboard_taskattempt (task_id, attempt, outcome, worker, started_at,
                finished_at, runtime, queue_wait, worker_key, outcome_rank)
            SELECT tid, a, CASE WHEN a = 0 AND n % 10 = 5 THEN 'RETRY' ELSE {state} END,
                'celery@worker-' || (n % 8), ts + make_interval(secs => a * 2),
                CASE WHEN {finished} OR a = 0 THEN ts + make_interval(secs => a * 2 + 0.5) END,
                0.5, 0.2, 0, 0
            FROM bench_src, generate_series(0, CASE WHEN n % 10 = 5 THEN 1 ELSE 0 END) AS a
            ORDER BY n, a""")
        conn.execute(f"""
            INSERT INTO django_celery_results_taskresult (task_id, status, content_type,
                content_encoding, result, date_done, traceback, meta, task_args, task_kwargs,
                task_name, worker, date_created, periodic_task_name, date_started)
            SELECT tid, {state}, 'application/json', 'utf-8', 'null', ts + interval '0.5 s',
                NULL, '{{}}', '"(' || (n / 3) || ',)"', '"{{}}"', ({names})[1 + n % 20],
                'celery@worker-' || (n % 8), ts, NULL, NULL
            FROM bench_src WHERE n > {e} OR n % {RESULTS_EVERY} = 0 ORDER BY n""")
        log(f"seed rows inserted in {time.perf_counter() - t0:.0f}s; building indexes")
        for _, definition in indexes:
            conn.execute(definition)
        conn.execute("VACUUM ANALYZE")
        log(f"seed generated in {time.perf_counter() - t0:.0f}s")


def copy_seed(url: str, seed: Seed) -> None:
    """A fresh database from the seed (a file copy), its statistics and visibility map included."""
    name = _db_name(url)
    template = _seed_name(url, seed.expired, seed.kept)
    with _admin(url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')


def _django(url: str, app_name: str) -> None:
    os.environ["DATABASE_URL"] = with_app_name(url, app_name)
    os.environ["ALLOWED_HOSTS"] = "testserver"  # the test client's host
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    import django

    django.setup()


# -- the stream load ------------------------------------------------------------------------------


class Feeder:
    """Keeps the monitor's stream topped up with entries of new tasks, so the monitor is never idle
    and its rate is what it can write. Entries are built once (``bench.ingest``'s tasks) and renamed
    for each later generation (same-length prefix: the msgpack stays valid); pushing costs little.
    """

    def __init__(self, client: Any, stream: str, prefix: str) -> None:
        from bench.ingest import EVENTS_PER_ENTRY, _chunks, build_events
        from tasktrail.events import ENTRY_FIELD, encode_batch

        self._client = client
        self._stream = stream
        self._prefix = prefix.encode()
        self._field = ENTRY_FIELD
        events, _, _ = build_events(prefix + "g000-", BASE_EVENTS, t0=time.time() - 600)
        chunks = list(_chunks(events, EVENTS_PER_ENTRY))
        self._entries = [encode_batch(c)[ENTRY_FIELD] for c in chunks]
        self._sizes = [len(c) for c in chunks]
        self._next = 0
        self.cumulative = [0]  # events in the first i entries pushed
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-feeder", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        self._push(TOP_UP_BELOW + TOP_UP_ENTRIES)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def consumed(self) -> tuple[int, int]:
        """Entries and events the monitor has acknowledged (and deleted) so far."""
        with self.lock:
            entries = len(self.cumulative) - 1 - int(self._client.xlen(self._stream))
            return entries, self.cumulative[entries]

    def _push(self, count: int) -> None:
        pipe = self._client.pipeline(transaction=False)
        with self.lock:
            for _ in range(count):
                generation, index = divmod(self._next, len(self._entries))
                if generation > 999:  # the prefix's length must not change
                    raise RuntimeError("the stream load ran out of task ids")
                packed = self._entries[index]
                if generation:
                    packed = packed.replace(
                        self._prefix + b"g000-", self._prefix + f"g{generation:03d}-".encode()
                    )
                pipe.xadd(self._stream, {self._field: packed})
                self.cumulative.append(self.cumulative[-1] + self._sizes[index])
                self._next += 1
            pipe.execute()

    def _run(self) -> None:
        try:
            while not self._stop.wait(0.01):
                if int(self._client.xlen(self._stream)) < TOP_UP_BELOW:
                    self._push(TOP_UP_ENTRIES)
        except BaseException as exc:  # reported by the driver
            self.error = exc


class Progress:
    """When the monitor acknowledged each batch: (wall time, events consumed so far)."""

    def __init__(self, feeder: Feeder) -> None:
        self._feeder = feeder
        self.steps: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-progress", daemon=True)

    def __enter__(self) -> Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        last = -1
        while not self._stop.wait(PROGRESS_SECONDS):
            with contextlib.suppress(Exception):
                _, events = self._feeder.consumed()
                if events != last:
                    self.steps.append((time.time(), events))
                    last = events

    def consumed_at(self, t: float) -> float:
        """Events consumed by time ``t``, interpolated between acknowledgements: a batch is
        written between the acknowledgement of the one before and its own."""
        times = [step[0] for step in self.steps]
        i = bisect.bisect_right(times, t)
        if i == 0:
            return float(self.steps[0][1]) if self.steps else 0.0
        if i == len(self.steps):
            return float(self.steps[-1][1])
        (t0, n0), (t1, n1) = self.steps[i - 1], self.steps[i]
        return n0 + (n1 - n0) * (t - t0) / (t1 - t0)

    def window(self, start: float, end: float) -> tuple[float, float]:
        """Events written in the window, and the longest time between two acknowledgements in it
        (or around it: a batch in progress at its start or end counts)."""
        times = [step[0] for step in self.steps]
        lo, hi = bisect.bisect_left(times, start), bisect.bisect_right(times, end)
        edges = times[max(lo - 1, 0) : min(hi + 1, len(times))]
        gap = max((b - a for a, b in itertools.pairwise(edges)), default=end - start)
        return self.consumed_at(end) - self.consumed_at(start), gap


class LockSampler:
    """Lock waits of every session in the database, from ``pg_locks.waitstart`` (PostgreSQL 14+):
    the longest wait seen per ``application_name`` and phase, sampled every 50 ms."""

    def __init__(self, url: str) -> None:
        self._url = url
        self.samples: list[tuple[float, str, float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-locks", daemon=True)

    def __enter__(self) -> LockSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(with_app_name(self._url, "bench-locks"), autocommit=True) as conn:
            while not self._stop.wait(LOCK_SAMPLE_SECONDS):
                rows = conn.execute(
                    """SELECT a.application_name,
                        extract(epoch FROM clock_timestamp() - l.waitstart)::float8,
                        l.locktype || ' ' || l.mode || ': ' || left(a.query, 120)
                    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                    WHERE NOT l.granted AND a.datname = current_database()
                        AND l.waitstart IS NOT NULL"""
                ).fetchall()
                now = time.time()
                self.samples += [(now, app or "?", float(s), what) for app, s, what in rows]

    def longest(self, start: float, end: float) -> dict[str, tuple[float, str]]:
        worst: dict[str, tuple[float, str]] = {}
        for t, app, seconds, what in self.samples:
            if start <= t <= end and seconds > worst.get(app, (-1.0, ""))[0]:
                worst[app] = (seconds, what)
        return worst


# -- children ------------------------------------------------------------------------------------


_stopping = False


def _stop_on_term(signum: int, frame: FrameType | None) -> None:
    global _stopping
    _stopping = True


def role_prune(url: str, out: Path, batch_size: int | None, seconds: float | None) -> int:
    _django(url, APP_PRUNE)
    from django.utils import timezone

    from dashboard.retention.policy import RetentionPolicy
    from dashboard.retention.pruner import DEFAULT_BATCH_SIZE, prune_pass

    policy = RetentionPolicy.from_settings()
    batch_size = batch_size or DEFAULT_BATCH_SIZE
    print("pruning", flush=True)
    started = time.time()
    cpu = time.process_time()
    deadline = None if seconds is None else time.monotonic() + seconds
    report = prune_pass(policy, now=timezone.now(), batch_size=batch_size, deadline=deadline)
    ended = time.time()
    cpu = time.process_time() - cpu
    from django.db import connection

    from bench.procs import tree_cpu_seconds

    with connection.cursor() as cursor:  # the same machine: its session's process is readable
        cursor.execute("SELECT pg_backend_pid()")
        (backend,) = cursor.fetchone()
    out.write_text(
        json.dumps(
            {
                "started": started,
                "ended": ended,
                "report": report.as_dict(),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "cpu_seconds": cpu,
                "database_cpu_seconds": tree_cpu_seconds(backend),
                "policy": dataclasses.asdict(policy),
                "batch_size": batch_size,
            }
        )
    )
    return 0


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)


def role_poll(url: str, out: Path, task_id: str) -> int:
    """Request the pages in a loop until SIGTERM; every request's start and duration."""
    signal.signal(signal.SIGTERM, _stop_on_term)
    _django(url, APP_PAGES)
    from django.test import Client

    client = Client()
    client.force_login(_superuser())
    pages = [("Tasks list, first page", "/tasks/"), ("kept task's page", f"/tasks/{task_id}/")]
    samples: list[tuple[str, float, float, int]] = []
    print("polling", flush=True)
    while not _stopping:
        for label, path in pages:
            started = time.time()
            status = client.get(path).status_code
            samples.append((label, started, (time.time() - started) * 1000, status))
        time.sleep(POLL_INTERVAL)
    out.write_text(json.dumps(samples))
    return 0


def _superuser() -> Any:
    from django.contrib.auth.models import User

    user, _ = User.objects.get_or_create(username="bench", defaults={"is_superuser": True})
    user.is_superuser = user.is_staff = True
    user.save()
    return user


# -- the driver ----------------------------------------------------------------------------------

WITHOUT: Final = "without pruning"
PRUNING: Final = "pruning"


@dataclass
class Summary:
    """The monitor, the pages and the locks over all windows of one kind."""

    kind: str
    windows: int
    seconds: float
    events_per_second: float | None
    per_window: list[float]
    longest_gap_s: float  # longest time between two batches the monitor acknowledged
    monitor_cpu_cores: float | None  # the monitor's CPU seconds per second
    monitor_db_cpu_cores: float | None  # its database sessions' (processes on this machine)
    machine_busy: float | None  # share of all cores busy (everything on the machine)
    monitor_peak_rss_mb: float | None
    lock_waits: dict[str, tuple[float, str]]  # application_name -> (longest s, what)
    pages_ms: dict[str, tuple[float, float, int]]  # page -> (median ms, max ms, requests)


@dataclass
class Pass:
    seconds: float
    complete: bool
    removed: dict[str, int]
    batches: int
    peak_rss_mb: float
    cpu_seconds: float  # the pruner process's own
    database_cpu_seconds: float | None  # its database session's (a process on this machine)
    errors: list[str]


@dataclass
class Result:
    expired: int
    kept: int
    recent: int
    expired_results: int
    generated_seconds: float | None
    seed_age_minutes: float
    batch_size: int
    segment_seconds: float
    passes: list[Pass]
    summaries: dict[str, Summary]
    vacuum_seconds: float
    check: str
    pages: list[dict[str, Any]] = field(default_factory=list)
    page_repeat: int = 0
    overview_check_ms: float | None = None  # counting the overview's figures, as a check does

    @property
    def prune_seconds(self) -> float:
        return sum(p.seconds for p in self.passes)

    @property
    def removed(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for p in self.passes:
            for table, count in p.removed.items():
                total[table] = total.get(table, 0) + count
        return total

    @property
    def ingest_ratio(self) -> float | None:
        pruning, without = self.summaries.get(PRUNING), self.summaries.get(WITHOUT)
        if pruning is None or without is None:
            return None
        if pruning.events_per_second is None or not without.events_per_second:
            return None
        return pruning.events_per_second / without.events_per_second

    @property
    def longest_wait_pruning(self) -> tuple[float, str]:
        """Longest lock wait of a page or the monitor while pruning, and what it was (from the
        lock samples: a wait near the goal spans many of them)."""
        pruning = self.summaries.get(PRUNING)
        if pruning is None:
            return 0.0, ""
        seen = [(s, f"{app}: {what}") for app, (s, what) in pruning.lock_waits.items()
                if app in (APP_MONITOR, APP_PAGES)]  # fmt: skip
        return max(seen, default=(0.0, "none sampled"))

    @property
    def rss_ratio(self) -> float | None:
        pruning, without = self.summaries.get(PRUNING), self.summaries.get(WITHOUT)
        if pruning is None or without is None:
            return None
        if pruning.monitor_peak_rss_mb is None or not without.monitor_peak_rss_mb:
            return None
        return pruning.monitor_peak_rss_mb / without.monitor_peak_rss_mb


def run_driver(args: argparse.Namespace) -> Result:
    from bench.context import Bench
    from bench.rss import Sampler, tree_rss_mb

    url = os.environ.get("BENCH_RETENTION_DATABASE_URL", DEFAULT_URL)
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        raise SystemExit("bench.retention needs REDIS_URL (python -m bench sets it)")
    log(f"seed: {args.expired:,} expired + {args.kept:,} kept tasks")
    seed = ensure_seed(url, expired=args.expired, kept=args.kept, regenerate=args.regenerate)
    copy_seed(url, seed)
    log("database copied from the seed")
    _django(url, "bench-retention")
    from django.db import connection

    from dashboard.models import TaskAttempt, TaskRun

    log_dir = args.log_dir or RESULTS / "logs-retention"
    log_dir.mkdir(parents=True, exist_ok=True)
    bench = Bench(redis_url, url, log_dir)
    kept_task = _task_id(seed.expired + seed.kept // 2)
    prefix = bench.task_prefix("retention")
    stream = bench.stream("retention")
    windows: list[tuple[str, float, float]] = []
    passes: list[Pass] = []
    peaks: dict[str, float] = {}
    # kind -> wall s, monitor CPU s, machine busy, machine total, monitor's database sessions CPU s
    cpu: dict[str, list[float]] = {}
    batch_size = 0
    try:
        feeder = Feeder(bench.client, stream, prefix)
        monitor = bench.procs.python(
            "retention-monitor",
            ["manage.py", "monitor", "--consumer", "bench-retention", "--no-alerts"],
            bench.child_env(
                TASKTRAIL_STREAM=stream,
                DATABASE_URL=with_app_name(url, APP_MONITOR),
                TASKTRAIL_PRUNE_EVERY_SECONDS="0",  # the passes under test run in their own process
            ),
        )
        poll_out = log_dir / "retention-poll.json"
        prune_out = log_dir / "retention-prune.json"
        poll_out.unlink(missing_ok=True)
        poller = bench.procs.python(
            "retention-pages",
            ["-m", "bench.retention", "--role", "poll", "--out", str(poll_out), "--task-id",
             kept_task],
            bench.child_env(BENCH_RETENTION_DATABASE_URL=url),
        )  # fmt: skip
        _wait_line(monitor, ": reading ")
        _wait_line(poller, "polling")
        children = [monitor, poller]
        feeder.start()
        rss = Sampler({"monitor": lambda: tree_rss_mb(monitor.pid)}, RSS_SAMPLE_SECONDS)

        def peak(kind: str) -> None:
            value = rss.peaks(reset=True).get("monitor")
            if value is not None:
                peaks[kind] = max(value, peaks.get(kind, 0.0))

        def snapshot() -> tuple[float, float, float, float, float]:
            busy, total = _machine_jiffies()
            own = monitor.cpu_seconds() or 0.0
            return time.monotonic(), own, busy, total, _session_cpu(APP_MONITOR)

        def account(kind: str, before: tuple[float, ...], after: tuple[float, ...]) -> None:
            sums = cpu.setdefault(kind, [0.0] * 5)
            for i, (a, b) in enumerate(zip(before, after, strict=True)):
                sums[i] += b - a

        def without() -> None:
            start, before = time.time(), snapshot()
            _sleep_checked(args.segment, children, feeder)
            windows.append((WITHOUT, start, time.time()))
            account(WITHOUT, before, snapshot())
            peak(WITHOUT)

        with Progress(feeder) as progress, LockSampler(url) as locks, rss:
            log(f"monitor ingesting; warm-up {args.warmup:.0f}s")
            _sleep_checked(args.warmup, children, feeder)
            rss.peaks(reset=True)
            without()
            deadline = time.monotonic() + PRUNE_TIMEOUT
            while True:
                prune_out.unlink(missing_ok=True)
                pruner = bench.procs.python(
                    f"retention-prune-{len(passes) + 1}",
                    ["-m", "bench.retention", "--role", "prune", "--out", str(prune_out),
                     "--seconds", str(args.segment),
                     *(["--batch-size", str(args.batch_size)] if args.batch_size else [])],
                    bench.child_env(BENCH_RETENTION_DATABASE_URL=url),
                )  # fmt: skip
                began: tuple[float, ...] | None = None
                while pruner.running():
                    if began is None and "pruning" in pruner.output():
                        began = snapshot()
                    _check(children, feeder)
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"still pruning after {PRUNE_TIMEOUT:.0f}s")
                    time.sleep(0.05)
                if began is not None:
                    account(PRUNING, began, snapshot())
                code = bench.procs.stop(pruner)
                if code != 0 or not prune_out.exists():
                    raise RuntimeError(f"prune pass failed ({code})\n{pruner.tail()}")
                done = json.loads(prune_out.read_text())
                report = done["report"]
                if report["errors"]:
                    raise RuntimeError(f"prune pass: {report['errors']}")
                batch_size = int(done["batch_size"])
                windows.append((PRUNING, float(done["started"]), float(done["ended"])))
                peak(PRUNING)
                passes.append(
                    Pass(
                        seconds=float(done["ended"]) - float(done["started"]),
                        complete=bool(report["complete"]),
                        removed=dict(report["removed"]),
                        batches=int(report["batches"]),
                        peak_rss_mb=float(done["peak_rss_mb"]),
                        cpu_seconds=float(done["cpu_seconds"]),
                        database_cpu_seconds=done.get("database_cpu_seconds"),
                        errors=list(report["errors"]),
                    )
                )
                log(
                    f"pass {len(passes)}: {passes[-1].seconds:.1f}s, "
                    f"{report['removed'].get('TaskRun', 0):,} tasks removed"
                    + ("" if passes[-1].complete else " (stopped at its deadline)")
                )
                without()
                if passes[-1].complete:
                    break
        feeder.stop()
        bench.procs.stop(poller)
        bench.procs.stop(monitor)
        samples = json.loads(poll_out.read_text()) if poll_out.exists() else []
        summaries = {
            kind: _summary(kind, windows, progress, locks, samples, peaks.get(kind), cpu.get(kind))
            for kind in (WITHOUT, PRUNING)
        }
        for s in summaries.values():
            log(f"  {s.kind}: {s.events_per_second or 0:,.0f} events/s over {s.seconds:.0f}s")
        check = _check_rows(seed, prefix)
        log(check)
        TaskRun.objects.filter(task_id__startswith=prefix).delete()
        TaskAttempt.objects.filter(task_id__startswith=prefix).delete()
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
        vacuum_seconds = time.perf_counter() - started
        log(f"VACUUM ANALYZE after the passes: {vacuum_seconds:.1f}s; timing pages")
        pages, overview_check_ms = _time_pages(kept_task, args.page_repeat)
    finally:
        bench.close()
    return Result(
        expired=seed.expired,
        kept=seed.kept,
        recent=seed.recent,
        expired_results=seed.expired // RESULTS_EVERY,
        generated_seconds=seed.generated_seconds,
        seed_age_minutes=(time.time() - seed.generated_at) / 60,
        batch_size=batch_size,
        segment_seconds=args.segment,
        passes=passes,
        summaries=summaries,
        vacuum_seconds=vacuum_seconds,
        check=check,
        pages=pages,
        page_repeat=args.page_repeat,
        overview_check_ms=overview_check_ms,
    )


def _session_cpu(app: str) -> float:
    """CPU seconds so far of this database's sessions named ``app`` (their server processes run
    on this machine)."""
    from django.db import connection

    from bench.procs import tree_cpu_seconds

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s "
            "AND datname = current_database()",
            [app],
        )
        pids = [pid for (pid,) in cursor.fetchall()]
    return sum(tree_cpu_seconds(pid) or 0.0 for pid in pids)


def _machine_jiffies() -> tuple[float, float]:
    """Busy and total CPU time of the whole machine so far, in clock ticks (Linux; else 0, 0)."""
    try:
        fields = [float(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def _summary(
    kind: str,
    windows: Sequence[tuple[str, float, float]],
    progress: Progress,
    locks: LockSampler,
    samples: Sequence[Sequence[Any]],
    rss_mb: float | None,
    cpu: Sequence[float] | None,
) -> Summary:
    mine = [(start, end) for k, start, end in windows if k == kind]
    events = 0.0
    per_window = []
    gap = 0.0
    waits: dict[str, tuple[float, str]] = {}
    for start, end in mine:
        written, longest = progress.window(start, end)
        events += written
        per_window.append(written / (end - start))
        gap = max(gap, longest)
        for app, (wait, what) in locks.longest(start, end).items():
            if wait > waits.get(app, (-1.0, ""))[0]:
                waits[app] = (wait, what)
    seconds = sum(end - start for start, end in mine)
    return Summary(
        kind=kind,
        windows=len(mine),
        seconds=seconds,
        events_per_second=events / seconds if seconds else None,
        per_window=per_window,
        longest_gap_s=gap,
        monitor_cpu_cores=cpu[1] / cpu[0] if cpu and cpu[0] else None,
        monitor_db_cpu_cores=cpu[4] / cpu[0] if cpu and cpu[0] else None,
        machine_busy=cpu[2] / cpu[3] if cpu and cpu[3] else None,
        monitor_peak_rss_mb=rss_mb,
        lock_waits=waits,
        pages_ms=_page_stats(samples, mine),
    )


def _task_id(n: int) -> str:
    """The seed's task id of task n (``md5('t' || n)::uuid``)."""
    import uuid

    return str(uuid.UUID(hashlib.md5(f"t{n}".encode(), usedforsecurity=False).hexdigest()))


def _wait_line(process: Any, line: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while line not in process.output():
        if not process.running():
            raise RuntimeError(f"{process.name} exited early\n{process.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{process.name} not ready after {timeout:.0f}s\n{process.tail()}")
        time.sleep(0.05)


def _check(processes: Sequence[Any], feeder: Feeder) -> None:
    for process in processes:
        if not process.running():
            raise RuntimeError(f"{process.name} exited early\n{process.tail()}")
    if feeder.error is not None:
        raise RuntimeError(f"feeding the stream failed: {feeder.error!r}")


def _sleep_checked(seconds: float, processes: Sequence[Any], feeder: Feeder) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        _check(processes, feeder)
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


def _page_stats(
    samples: Sequence[Sequence[Any]], windows: Sequence[tuple[float, float]]
) -> dict[str, tuple[float, float, int]]:
    by_page: dict[str, list[float]] = {}
    for label, began, ms, status in samples:
        if any(start <= began <= end for start, end in windows):
            if status != 200:
                raise RuntimeError(f"{label}: the page answered {status}")
            by_page.setdefault(label, []).append(ms)
    return {p: (statistics.median(v), max(v), len(v)) for p, v in by_page.items()}


def _check_rows(seed: Seed, prefix: str) -> str:
    """What is left: no expired task, attempt or result; every kept one."""
    from django.db import connection

    cutoff = seed.generated_at - (EXPIRED_DAYS[0] - 1) * 86400
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT
                (SELECT count(*) FROM dashboard_taskrun WHERE first_seen_at < to_timestamp(%s)),
                (SELECT count(*) FROM dashboard_taskrun WHERE first_seen_at >= to_timestamp(%s)
                    AND NOT starts_with(task_id, %s)),
                (SELECT count(*) FROM dashboard_taskattempt a WHERE NOT EXISTS
                    (SELECT 1 FROM dashboard_taskrun r WHERE r.task_id = a.task_id)),
                (SELECT count(*) FROM django_celery_results_taskresult)""",
            [cutoff, cutoff, prefix],
        )
        expired, kept, orphans, results = cursor.fetchone()
    return (
        f"left after the pass: {expired:,} expired TaskRun (0 expected), {kept:,}/{seed.kept:,} "
        f"kept TaskRun, {orphans:,} TaskAttempt without their task (0 expected), {results:,} "
        f"TaskResult ({seed.kept:,} expected)"
    )


def _time_pages(kept_task: str, repeat: int) -> tuple[list[dict[str, Any]], float]:
    """``bench.pages``' method on the kept rows: server time through the test client; and the
    time to count the overview's figures, which are stored first (the monitor runs without
    alerts, so none of its checks stored them)."""
    from django.test import Client
    from django_celery_results.models import TaskResult

    from bench.pages import NAMES, _time, write_overview_figures

    overview_check_ms = write_overview_figures()

    client = Client()
    client.force_login(_superuser())
    their_sample = TaskResult.objects.get(task_id=kept_task)

    def get(path: str, **params: str) -> Callable[[], int]:
        return lambda: client.get(path, params).status_code

    admin = "/admin/django_celery_results/taskresult/"
    pairs = [
        ("tasks page", get("/tasks/"), get(admin)),
        ("state filter (FAILURE)", get("/tasks/", state="FAILURE"),
         get(admin, status__exact="FAILURE")),
        ("task-name filter", get("/tasks/", name=NAMES[3]), get(admin, q=NAMES[3])),
        ("task detail", get(f"/tasks/{kept_task}/"), get(f"{admin}{their_sample.pk}/change/")),
        ("overview", get("/"), None),
    ]  # fmt: skip
    timings = []
    for label, ours, theirs in pairs:
        timings.append(
            {
                "page": label,
                "tasktrail_ms": _time(label, ours, repeat),
                "admin_ms": None if theirs is None else _time(label, theirs, repeat),
            }
        )
    return timings, overview_check_ms


# -- report --------------------------------------------------------------------------------------


def _verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def goals(result: Result) -> list[list[str]]:
    rows = []
    ratio = result.ingest_ratio
    if ratio is not None:
        rows.append(
            [f"monitor ingest while pruning ≥ {INGEST_RATIO_GOAL}x without (same load)",
             f"{ratio:.3f}x", _verdict(ratio >= INGEST_RATIO_GOAL)]
        )  # fmt: skip
    wait, what = result.longest_wait_pruning
    rows.append(
        [f"longest lock wait of a page or the monitor while pruning < {LOCK_WAIT_GOAL_S:.0f} s",
         f"{wait:.2f} s ({what[:70]})" if what else f"{wait:.2f} s",
         _verdict(wait < LOCK_WAIT_GOAL_S)]
    )  # fmt: skip
    rss = result.rss_ratio
    if rss is not None:
        rows.append(
            [f"monitor peak RSS flat while pruning (≤ {RSS_FLAT_GOAL}x without)", f"{rss:.2f}x",
             _verdict(rss <= RSS_FLAT_GOAL)]
        )  # fmt: skip
    return rows


def markdown(result: Result, heading: str = "##") -> list[str]:
    generated = (
        f"generated in this run ({result.generated_seconds:.0f} s)"
        if result.generated_seconds
        else f"reused from a seed made {result.seed_age_minutes:.0f} min earlier"
    )
    without = result.summaries.get(WITHOUT)
    base = without.events_per_second if without else None
    rows = []
    for kind in (WITHOUT, PRUNING):
        s = result.summaries[kind]
        rate = s.events_per_second
        waits = ", ".join(f"{app} {w:.2f}" for app, (w, _) in sorted(s.lock_waits.items()))
        rows.append(
            [kind, f"{s.windows} / {s.seconds:.0f} s",
             "-" if rate is None else f"{rate:,.0f}",
             " / ".join(f"{r:,.0f}" for r in s.per_window),
             "-" if rate is None or not base else f"{rate / base:.2f}x",
             f"{s.longest_gap_s:.2f}",
             "-" if s.monitor_peak_rss_mb is None else f"{s.monitor_peak_rss_mb:.0f}",
             "-" if s.monitor_cpu_cores is None or s.monitor_db_cpu_cores is None
             else f"{s.monitor_cpu_cores:.2f} + {s.monitor_db_cpu_cores:.2f}",
             "-" if s.machine_busy is None else f"{s.machine_busy * 100:.0f}%",
             waits or "none",
             "; ".join(f"{page} {med:.0f} / {mx:.0f}"
                       for page, (med, mx, _) in s.pages_ms.items())]
        )  # fmt: skip
    removed = ", ".join(f"{table} {count:,}" for table, count in result.removed.items() if count)
    seconds = result.prune_seconds
    lines = [
        f"{heading} Retention: pruning {result.expired:,} expired tasks beside {result.kept:,} "
        "kept ones",
        "",
        f"Rows {generated}: {result.expired:,} expired tasks (45-75 days old: every kind past "
        f"the default policy) and {result.kept:,} kept ones ({result.recent:,} in the last 24 h, "
        "the others 1-13 days old), 1.1 TaskAttempt rows per task, django-celery-results "
        f"TaskResult rows for every kept task and {result.expired_results:,} expired ones; "
        "VACUUM ANALYZE before (the server runs without autovacuum). `prune_pass` with the "
        f"default policy and batch size ({result.batch_size:,}), in a process of its own beside "
        "the monitor (the monitor's pruning thread runs the same passes inside the monitor's "
        "process; here that thread is off), "
        f"{result.segment_seconds:.0f} s per pass (its deadline), alternating with "
        f"{result.segment_seconds:.0f} s windows without pruning, while one "
        "`manage.py monitor --no-alerts` ingests a stream kept topped up (always busy: its rate "
        "is what it can write). Ingest: events written in the windows of each kind "
        "(acknowledged batches, interpolated between acknowledgements). Pages: the Tasks "
        "list's first page and a kept task's page requested every "
        f"{POLL_INTERVAL * 1000:.0f} ms by another process (median / max ms, server time). Lock "
        "waits: the longest `pg_locks.waitstart` age seen per session (application_name), "
        f"sampled every {LOCK_SAMPLE_SECONDS * 1000:.0f} ms. CPU: the monitor's "
        "(process and children, then its database session) per second, and the whole "
        "machine's busy share (all its processes, the database's and other users' included: "
        "comparable within one run only).",
        "",
        f"**Pruning took {seconds:.1f} s in {len(result.passes)} pass(es) "
        f"({result.expired / seconds:,.0f} tasks/s)**: removed {removed}. "
        f"Pruner process: peak RSS {max(p.peak_rss_mb for p in result.passes):.0f} MB, "
        f"CPU {sum(p.cpu_seconds for p in result.passes):.0f} s, its database session's "
        f"{sum(p.database_cpu_seconds or 0.0 for p in result.passes):.0f} s. "
        f"VACUUM ANALYZE afterwards {result.vacuum_seconds:.0f} s (not counted).",
        "",
        "Passes (tasks removed in s): "
        + ", ".join(f"{p.removed.get('TaskRun', 0):,} in {p.seconds:.1f}" for p in result.passes)
        + ".",
        "",
        *_table(
            [
                "",
                "windows / time",
                "ingest events/s",
                "per window",
                "ratio to without",
                "monitor's longest gap s",
                "monitor peak RSS MB",
                "monitor CPU cores (process + database session)",
                "machine CPU busy",
                "longest lock wait s",
                "pages median / max ms",
            ],
            rows,
        ),
        "",
        f"Check: {result.check}.",
    ]
    if result.pages:
        page_rows = [
            [p["page"], f"{p['tasktrail_ms']:.1f}",
             "" if p["admin_ms"] is None else f"{p['admin_ms']:.0f}",
             "" if p["admin_ms"] is None else f"{p['admin_ms'] / p['tasktrail_ms']:.1f}x"]
            for p in result.pages
        ]  # fmt: skip
        lines += [
            "",
            f"Pages at the {result.kept:,} kept tasks after pruning ({result.recent:,} in the "
            "last 24 h), beside django-celery-results' admin on the same rows: server time "
            f"through Django's test client as a superuser, median of {result.page_repeat} after "
            "one warm-up request (`bench.pages`' method). The overview shows the figures "
            "stored before timing it, counted as a monitor's alert check counts them"
            + (
                ""
                if result.overview_check_ms is None
                else f" (counting took {result.overview_check_ms:.0f} ms, once per check)"
            )
            + ".",
            "",
            *_table(
                ["page", "tasktrail ms", "django-celery-results admin ms", "admin / tasktrail"],
                page_rows,
            ),
        ]
    return lines


def to_json(result: Result) -> dict[str, Any]:
    """The figures, and the report's goal rows and section as ``python -m bench`` prints them."""
    data = _plain(result)
    data.update(
        prune_seconds=result.prune_seconds,
        removed=result.removed,
        ingest_ratio=result.ingest_ratio,
        longest_wait_pruning=list(result.longest_wait_pruning),
        rss_ratio=result.rss_ratio,
        goals=goals(result),
        markdown=markdown(result, heading="## 6."),
    )
    return data


# -- in ``python -m bench`` ------------------------------------------------------------------------


def database_url(main_url: str) -> str | None:
    """This benchmark's database on the server of ``python -m bench``'s, or None when that is not
    PostgreSQL."""
    parts = urlsplit(main_url)
    if parts.scheme not in ("postgres", "postgresql", "pgsql"):
        return None
    return urlunsplit(parts._replace(path="/" + _db_name(DEFAULT_URL), query=""))


def splice(text: str, goal_rows: Sequence[Sequence[str]], section: Sequence[str]) -> str:
    """``python -m bench``'s report with this section's goal rows added to its goals table (made
    if the report has none) and the section before the failures (or at the end)."""
    lines = text.rstrip("\n").split("\n")
    rows = ["| " + " | ".join(row) + " |" for row in goal_rows]
    if "## Goals" in lines:
        at = lines.index("## Goals") + 2
        while at < len(lines) and lines[at].startswith("|"):
            at += 1
        lines[at:at] = rows
    elif rows:
        first = next((i for i, line in enumerate(lines) if line.startswith("## ")), len(lines))
        table = _table(["goal", "measured", "verdict"], goal_rows)
        if first < len(lines):
            lines[first:first] = ["## Goals", "", *table, ""]
        else:
            lines += ["", "## Goals", "", *table]
    end = lines.index("## Failed") - 1 if "## Failed" in lines else len(lines)
    lines[end:end] = ["", *section]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--role", choices=("driver", "prune", "poll"), default="driver")
    parser.add_argument("--expired", type=int, help="Expired tasks (1,000,000; --quick 50,000).")
    parser.add_argument("--kept", type=int, help="Kept tasks (1,000,000; --quick 50,000).")
    parser.add_argument("--quick", action="store_true", help="Smoke run at 50,000 + 50,000.")
    parser.add_argument(
        "--segment",
        type=float,
        help="Seconds of each pass (its deadline) and of each window without pruning between "
        "them (20; --quick 8).",
    )
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=float, help="Seconds of ingest before measuring (10).")
    parser.add_argument("--batch-size", type=int, help="The pass's batch size (its default).")
    parser.add_argument("--page-repeat", type=int, default=5, help="Timed requests per page.")
    parser.add_argument("--regenerate", action="store_true", help="Generate the seed again.")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    parser.add_argument("--log-dir", type=Path, help="Children's logs (bench/results/logs-…).")
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--task-id", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    url = os.environ.get("BENCH_RETENTION_DATABASE_URL", DEFAULT_URL)
    if args.role == "prune":
        return role_prune(url, args.out, args.batch_size, args.seconds)
    if args.role == "poll":
        return role_poll(url, args.out, args.task_id)
    size = QUICK_ROWS if args.quick else 1_000_000
    args.expired = args.expired or size
    args.kept = args.kept or size
    args.segment = args.segment or (8.0 if args.quick else 20.0)
    args.warmup = args.warmup or (5.0 if args.quick else 10.0)
    if min(args.expired, args.kept) < RECENT_SHARE or args.page_repeat < 1:
        parser.error("--expired and --kept: at least 10; --page-repeat: positive")
    result = run_driver(args)
    data = to_json(result)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "retention.json").write_text(json.dumps(data, indent=1))
    if args.json is not None:
        args.json.write_text(json.dumps(data))
    lines = ["## Goals", "", *_table(["goal", "measured", "verdict"], goals(result)), ""]
    text = "\n".join([*lines, *markdown(result)]) + "\n"
    (RESULTS / "retention.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

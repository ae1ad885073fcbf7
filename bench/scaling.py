"""Section 2: 1k, 10k, 100k tasks through tasktrail and through Flower, history accumulating.

tasktrail: one ``manage.py monitor`` and one web process (``bench.wsgi_server``, the dashboard's
WSGI application) run for the whole section; Flower: one Flower process (``--max_tasks`` default,
100,000). Per size S, for each system: S no-op tasks are pre-published (two publisher processes),
a prefork worker ``-c 2`` (with ``-E`` for Flower) drains them and stops. Measured per size:

- drain time, from the first to the S-th completion, and per 1,000 tasks (linear growth: a flat
  figure per 1k);
- monitor lag, sampled every 0.2 s during the drain: stream entries not yet written and the age of
  the oldest one (maxima), and how long after the last task the stream was empty ("caught up");
  for Flower, how long after the last task its API showed the last tasks as finished;
- peak RSS of the monitor and of the web process (tasktrail) or of Flower, sampled likewise, over
  the drain and a few page fetches made after it (timed: the history is then the sum of the sizes).

Rows, keys and processes are removed at the end of the section (the driver vacuums the tables
before each section, and the statistics are refreshed before the pages are fetched:
``bench.database``).
"""

from __future__ import annotations

import http.client
import json
import statistics
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from bench import database
from bench import flower as bench_flower
from bench.context import Bench
from bench.procs import ChildFailed, Process
from bench.rss import Sampler, tree_rss_mb

SIZES: Final = (1_000, 10_000, 100_000)
PUBLISHERS: Final = 2
SAMPLE_SECONDS: Final = 0.2
CATCH_UP_TIMEOUT: Final = 300.0
WORKER_ARGS: Final = (
    "-P", "prefork", "-c", "2", "--without-gossip", "--without-mingle", "--without-heartbeat",
)  # fmt: skip


@dataclass(frozen=True)
class Point:
    system: str  # "tasktrail" or "flower"
    size: int
    history: int  # tasks recorded so far, this size included
    drain_seconds: float
    caught_up_seconds: float  # after the last task, until the events were all written / shown
    lag_entries: float | None  # tasktrail: max stream entries not yet written during the drain
    lag_seconds: float | None  # tasktrail: max age of the oldest such entry
    rss_mb: dict[str, float] = field(default_factory=dict)  # process -> peak RSS
    pages_ms: dict[str, float] = field(default_factory=dict)  # page -> median server+HTTP time

    @property
    def seconds_per_1k(self) -> float:
        return self.drain_seconds * 1000 / self.size


def run(bench: Bench, sizes: Sequence[int], log: Callable[[str], None]) -> list[Point]:
    points = _tasktrail(bench, sizes, log)
    points += _flower(bench, sizes, log)
    return points


# -- tasktrail -----------------------------------------------------------------------------------


def _tasktrail(bench: Bench, sizes: Sequence[int], log: Callable[[str], None]) -> list[Point]:
    stream = bench.stream("scale", "events")
    prefix = bench.task_prefix("scale")
    env = bench.child_env(BENCH_VARIANT="recorder", BENCH_STREAM=stream, TASKTRAIL_STREAM=stream)
    cookie, forget_login = _login(bench.run_id)
    points = []
    monitor = bench.procs.python(
        "scale-monitor",
        ["manage.py", "monitor", "--consumer", "bench-scale", "--no-alerts"],
        env,
    )
    port = bench_flower.free_port()
    web = bench.procs.python("scale-web", ["-m", "bench.wsgi_server", "--port", str(port)], env)
    try:
        bench_flower.wait_listening(web, port)
        probes: dict[str, Callable[[], float | None]] = {
            "monitor": lambda: tree_rss_mb(monitor.pid),
            "web": lambda: tree_rss_mb(web.pid),
            "lag_entries": lambda: float(bench.client.xlen(stream)),
            "lag_seconds": lambda: _oldest_age(bench, stream),
        }
        history = 0
        with Sampler(probes, SAMPLE_SECONDS) as sampler:
            for size in sizes:
                log(f"scaling: tasktrail, {size:,} tasks")
                queue = bench.queue("scale", "tasktrail", size)
                counter = bench.key("scale", "tasktrail", size)
                size_env = {**env, "BENCH_QUEUE": queue, "BENCH_COUNTER": counter}
                ids = _publish(bench, size_env, f"{prefix}{size}-", size, queue)
                _wait_empty(bench, stream, monitor)  # the published events are written
                sampler.peaks(reset=True)
                drain = _drain(bench, size_env, queue, counter, size, "tasktrail", [monitor])
                caught_up = _wait_empty(bench, stream, monitor)
                history += size
                database.analyze()  # as auto-analyze would after this many new rows
                pages = _dashboard_pages(port, cookie, ids[-1])
                peaks = sampler.peaks(reset=True)
                point = Point(
                    system="tasktrail",
                    size=size,
                    history=history,
                    drain_seconds=drain,
                    caught_up_seconds=caught_up,
                    lag_entries=peaks.get("lag_entries"),
                    lag_seconds=peaks.get("lag_seconds"),
                    rss_mb={k: peaks[k] for k in ("monitor", "web") if k in peaks},
                    pages_ms=pages,
                )
                log("  " + describe(point))
                points.append(point)
    finally:
        bench.procs.stop(web)
        bench.procs.stop(monitor)
        forget_login()
        _delete_rows(prefix)
        bench.cleanup()
    return points


def _login(run_id: str) -> tuple[str, Callable[[], None]]:
    """A superuser session in the database the web process reads; returns its cookie value."""
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.contrib.sessions.models import Session
    from django.test import Client

    user = User.objects.create_superuser(f"bench-{run_id}", password=None)
    client = Client()
    client.force_login(user)
    key = client.cookies[settings.SESSION_COOKIE_NAME].value

    def forget() -> None:
        Session.objects.filter(session_key=key).delete()
        user.delete()

    return f"{settings.SESSION_COOKIE_NAME}={key}", forget


def _dashboard_pages(port: int, cookie: str, task_id: str) -> dict[str, float]:
    return _fetch_all(
        port,
        {
            "tasks": "/tasks/",
            "overview": "/",
            "state filter": "/tasks/?state=SUCCESS",
            "task detail": f"/tasks/{task_id}/",
        },
        {"Cookie": cookie},
    )


def _oldest_age(bench: Bench, stream: str) -> float:
    first = bench.client.xrange(stream, count=1)
    if not first:
        return 0.0
    millis = int(first[0][0].decode().split("-")[0])
    return max(0.0, time.time() - millis / 1000)


def _wait_empty(bench: Bench, stream: str, monitor: Process) -> float:
    """Seconds until the monitor has written every entry of the stream."""
    start = time.perf_counter()
    while bench.client.xlen(stream):
        if not monitor.running():
            raise ChildFailed(f"monitor exited early\n{monitor.tail()}")
        if time.perf_counter() - start > CATCH_UP_TIMEOUT:
            raise ChildFailed(f"monitor still behind after {CATCH_UP_TIMEOUT:.0f}s")
        time.sleep(0.01)
    return time.perf_counter() - start


def _delete_rows(prefix: str) -> None:
    from dashboard.models import TaskAttempt, TaskRun

    for model in (TaskRun, TaskAttempt):
        model.objects.filter(task_id__startswith=prefix).delete()


# -- Flower --------------------------------------------------------------------------------------


def _flower(bench: Bench, sizes: Sequence[int], log: Callable[[str], None]) -> list[Point]:
    prefix = bench.task_prefix("scale-flower")
    env = bench.child_env(
        BENCH_VARIANT="flower", BENCH_EVENT_EXCHANGE=bench.queue("scale", "celeryev")
    )
    points = []
    flower, port = bench_flower.start(bench, "scale-flower", env)
    try:
        probes: dict[str, Callable[[], float | None]] = {"flower": lambda: tree_rss_mb(flower.pid)}
        history = 0
        with Sampler(probes, SAMPLE_SECONDS) as sampler:
            for size in sizes:
                log(f"scaling: Flower, {size:,} tasks")
                queue = bench.queue("scale", "flower", size)
                counter = bench.key("scale", "flower", size)
                size_env = {**env, "BENCH_QUEUE": queue, "BENCH_COUNTER": counter}
                ids = _publish(bench, size_env, f"{prefix}{size}-", size, queue)
                sampler.peaks(reset=True)
                drain = _drain(bench, size_env, queue, counter, size, "flower", [flower])
                caught_up = _wait_flower(flower, port, ids)
                history += size
                pages = _flower_pages(port, ids[-1])
                peaks = sampler.peaks(reset=True)
                point = Point(
                    system="flower",
                    size=size,
                    history=history,
                    drain_seconds=drain,
                    caught_up_seconds=caught_up,
                    lag_entries=None,
                    lag_seconds=None,
                    rss_mb={k: peaks[k] for k in ("flower",) if k in peaks},
                    pages_ms=pages,
                )
                log("  " + describe(point))
                points.append(point)
    finally:
        bench.procs.stop(flower)
        bench.cleanup()
    return points


def _wait_flower(flower: Process, port: int, ids: Sequence[str]) -> float:
    """Seconds until Flower shows the last task of each publisher as finished."""
    start = time.perf_counter()
    for task_id in ids:
        while _flower_state(port, task_id) != "SUCCESS":
            if not flower.running():
                raise ChildFailed(f"Flower exited early\n{flower.tail()}")
            if time.perf_counter() - start > CATCH_UP_TIMEOUT:
                raise ChildFailed(f"Flower still behind after {CATCH_UP_TIMEOUT:.0f}s")
            time.sleep(0.05)
    return time.perf_counter() - start


def _flower_state(port: int, task_id: str) -> str | None:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/task/info/{task_id}", timeout=30
        ) as reply:
            return str(json.load(reply).get("state"))
    except OSError:  # 404 until Flower has seen the task
        return None


def _flower_pages(port: int, task_id: str) -> dict[str, float]:
    datatable = (
        "/tasks/datatable?draw=1&start=0&length=15&search%5Bvalue%5D=&order%5B0%5D%5Bcolumn%5D=0"
        "&order%5B0%5D%5Bdir%5D=desc&columns%5B0%5D%5Bdata%5D=started"
    )
    return _fetch_all(
        port,
        {
            "tasks": datatable,
            "state filter": "/api/tasks?state=SUCCESS&limit=50",
            "task detail": f"/task/{task_id}",
        },
        {},
    )


# -- shared --------------------------------------------------------------------------------------


def _publish(bench: Bench, env: Mapping[str, str], prefix: str, size: int, queue: str) -> list[str]:
    """Publish ``size`` tasks from parallel publisher processes; the last task id of each."""
    shares = [size // PUBLISHERS + (1 if i < size % PUBLISHERS else 0) for i in range(PUBLISHERS)]
    children = [
        bench.procs.python(
            f"scale-publish-{prefix}{i}",
            ["-m", "bench.publisher", "--count", str(n), "--id-prefix", f"{prefix}{i}-"],
            env,
        )
        for i, n in enumerate(shares)
    ]
    for child in children:
        try:
            code = child.wait(120 + size / 200)
        finally:
            bench.procs.stop(child)
        if code != 0:
            raise ChildFailed(f"{child.name} exited with {code}\n{child.tail()}")
    waiting = int(bench.client.llen(queue))
    if waiting != size:
        raise RuntimeError(f"published {size} tasks but {waiting} are waiting in {queue}")
    return [f"{prefix}{i}-{n - 1}" for i, n in enumerate(shares)]


def _drain(
    bench: Bench,
    env: Mapping[str, str],
    queue: str,
    counter: str,
    size: int,
    system: str,
    others: Sequence[Process],
) -> float:
    """Start a worker on ``queue``; seconds from its first to its ``size``-th completion."""
    worker = bench.procs.python(
        f"scale-worker-{system}-{size}",
        ["-m", "celery", "-A", "bench.app", "worker", "-Q", queue, "-n", f"scale-{size}@%h",
         *WORKER_ARGS, *(["-E"] if system == "flower" else [])],
        env,
    )  # fmt: skip
    try:
        first: float | None = None
        last_change, last_count = time.perf_counter(), 0
        while True:
            count = int(bench.client.get(counter) or 0)
            now = time.perf_counter()
            if count and first is None:
                first = now
            if count >= size and first is not None:
                return now - first
            if count != last_count:
                last_change, last_count = now, count
            if now - last_change > 120:
                raise ChildFailed(f"no task finished for 120s ({count}/{size})\n{worker.tail()}")
            for child in (worker, *others):
                if not child.running():
                    raise ChildFailed(f"{child.name} exited early\n{child.tail()}")
            time.sleep(0.01)
    finally:
        bench.procs.stop(worker)


def _fetch_all(port: int, pages: Mapping[str, str], headers: Mapping[str, str]) -> dict[str, float]:
    """Median of 3 timed GETs per page (after one untimed), in ms; each must answer 200."""
    timings = {}
    for label, path in pages.items():
        samples = []
        for attempt in range(4):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            start = time.perf_counter()
            connection.request("GET", path, headers=dict(headers))
            reply = connection.getresponse()
            reply.read()
            elapsed = (time.perf_counter() - start) * 1000
            connection.close()
            if reply.status != 200:
                raise RuntimeError(f"GET {path} answered {reply.status}")
            if attempt:
                samples.append(elapsed)
        timings[label] = statistics.median(samples)
    return timings


def describe(point: Point) -> str:
    rss = ", ".join(f"{k} {v:.0f} MB" for k, v in point.rss_mb.items())
    lag = (
        f"; lag max {point.lag_entries:.0f} entries / {point.lag_seconds:.2f} s"
        if point.lag_entries is not None and point.lag_seconds is not None
        else ""
    )
    pages = ", ".join(f"{k} {v:.0f} ms" for k, v in point.pages_ms.items())
    return (
        f"{point.size / point.drain_seconds:.0f} tasks/s, {point.seconds_per_1k:.2f} s per 1k"
        f"{lag}; caught up {point.caught_up_seconds:.2f} s after; RSS {rss}; pages {pages}"
    )

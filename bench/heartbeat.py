"""What worker heartbeats cost in the worker: ``python -m bench --only heartbeat``.

Two measurements in one run:

1. Idle worker processes (solo pool, the same app) side by side over the same window: heartbeats
   off, every 5 s (the default) and every 1 s. Each one's CPU time (user + system, its process
   tree, from /proc) over the window, scaled to an hour; the difference to "off" is what the
   heartbeats add. Side by side, so the machine's load weighs on all three alike.
2. One beat, in this process: building it (queues, running tasks, counters) and writing it (the
   XADD + XTRIM pipeline, client side), CPU per beat, times the beats of an hour.

The workers run ``bench.heartbeat:app``; ``BENCH_HEARTBEAT=off`` installs tasktrail without its
heartbeats (the recorder and the rest stay on), so only the heartbeat differs.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from bench.context import Bench

VARIANTS = (("off", "off"), ("every 5 s (default)", "5"), ("every 1 s", "1"))
WINDOW_SECONDS = 90.0
QUICK_WINDOW_SECONDS = 30.0
SETTLE_SECONDS = 5.0  # after "ready": imports, first connections, the catalog report
BEATS = 2000
TICK = 0.01  # /proc's CPU time resolution (USER_HZ 100)


def __getattr__(name: str) -> Any:
    """``celery -A bench.heartbeat:app``: the app is built only in the worker that asks for it."""
    if name != "app":
        raise AttributeError(name)
    from celery import Celery

    import tasktrail
    from tasktrail import heartbeat

    if os.environ.get("BENCH_HEARTBEAT") == "off":
        heartbeat.install = lambda *args, **kwargs: None
    app = Celery("bench-heartbeat", broker=os.environ["REDIS_URL"], set_as_current=True)
    app.conf.task_default_queue = os.environ["BENCH_HB_QUEUE"]
    tasktrail.install(app, recorder_url=os.environ["REDIS_URL"])

    @app.task(name="bench.hb.noop")
    def noop() -> None: ...

    globals()["app"] = app
    return app


def run(bench: Bench, quick: bool, log: Callable[[str], None]) -> list[str]:
    window = QUICK_WINDOW_SECONDS if quick else WINDOW_SECONDS
    idle = idle_workers(bench, window, log)
    per_beat = one_beat(bench, BEATS // 4 if quick else BEATS)
    bench.cleanup()
    return markdown(idle, per_beat, window)


def idle_workers(bench: Bench, window: float, log: Callable[[str], None]) -> dict[str, float]:
    """CPU seconds each idle worker used over ``window``, by variant."""
    log(f"heartbeat: 3 idle solo workers (off, 5 s, 1 s) side by side for {window:.0f}s")
    workers = {}
    for label, interval in VARIANTS:
        queue = bench.queue("hb", interval)
        env = bench.child_env(
            BENCH_HB_QUEUE=queue,
            BENCH_HEARTBEAT="off" if interval == "off" else "on",
            TASKTRAIL_STREAM=bench.stream("hb"),
            TASKTRAIL_RECORDER_URL=bench.redis_url,
            TASKTRAIL_HEARTBEAT_INTERVAL="5" if interval == "off" else interval,
        )
        argv = [
            "-m", "celery", "-A", "bench.heartbeat:app", "worker", "-P", "solo", "-Q", queue,
            "-n", f"hb-{interval}-{bench.run_id}@%h", "-l", "info",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        workers[label] = bench.procs.python(f"heartbeat-{interval}", argv, env)
    try:
        deadline = time.monotonic() + 60
        for process in workers.values():
            while " ready." not in process.output():
                if not process.running() or time.monotonic() > deadline:
                    raise RuntimeError(f"worker did not start\n{process.tail()}")
                time.sleep(0.2)
        time.sleep(SETTLE_SECONDS)
        start = {label: p.cpu_seconds() or 0.0 for label, p in workers.items()}
        time.sleep(window)
        used = {label: (p.cpu_seconds() or 0.0) - start[label] for label, p in workers.items()}
    finally:
        for process in workers.values():
            bench.procs.stop(process)
    return used


def one_beat(bench: Bench, beats: int) -> dict[str, float]:
    """CPU and wall time of one beat built and written from this process, in microseconds."""
    from celery.concurrency.solo import TaskPool

    from tasktrail.heartbeat import Heartbeater

    consumer = SimpleNamespace(
        task_consumer=SimpleNamespace(queues=[SimpleNamespace(name="default")]),
        pool=TaskPool(),
        controller=SimpleNamespace(concurrency=1),
    )
    target = SimpleNamespace(
        recorder_url=bench.redis_url, stream=bench.stream("hb-beats"), stream_max_entries=1_000_000
    )
    beater = Heartbeater(consumer, SimpleNamespace(main="bench"), "bench@host", target)
    for _ in range(50):  # warm-up: the connection, first imports
        beater.send()
    cpu, wall = [], []
    for _ in range(5):
        c, w = time.process_time(), time.perf_counter()
        for _ in range(beats // 5):
            if not beater.send():
                raise RuntimeError("a heartbeat could not be written to Redis")
        cpu.append((time.process_time() - c) / (beats // 5) * 1e6)
        wall.append((time.perf_counter() - w) / (beats // 5) * 1e6)
    return {"cpu_us": statistics.median(cpu), "wall_us": statistics.median(wall), "beats": beats}


def _added(seconds: float, window: float) -> str:
    """What a variant added over the window, per hour; under /proc's 10 ms tick it is noise."""
    if abs(seconds) < TICK:
        return f"under the {TICK * 1000:.0f} ms tick in {window:.0f} s"
    return f"{seconds * 3600 / window:+.1f} s ({seconds / window:.2%} of a core)"


def markdown(idle: dict[str, float], beat: dict[str, float], window: float) -> list[str]:
    hour = 3600 / window
    off = idle["off"]
    labels = [label for label, _ in VARIANTS]
    rows = [
        f"| idle solo worker, CPU over {window:.0f} s | "
        + " | ".join(f"{idle[label]:.2f} s" for label in labels)
        + " |",
        "| the same, per hour | "
        + " | ".join(f"{idle[label] * hour:.1f} s" for label in labels)
        + " |",
        "| added by heartbeats, per hour | — | "
        + " | ".join(_added(idle[label] - off, window) for label in labels[1:])
        + " |",
        "| ratio to off | 1.00 | "
        + " | ".join(f"{idle[label] / off:.2f}" if off > 0 else "n/a" for label in labels[1:])
        + " |",
    ]
    per_hour = [beat["cpu_us"] * 3600 / interval / 1e6 for interval in (5, 1)]
    rows.append(
        "| one beat's own CPU x beats an hour (720, 3,600) | — | "
        + " | ".join(f"{cpu:.2f} s ({cpu / 3600:.3%} of a core)" for cpu in per_hour)
        + " |"
    )
    return [
        "## Heartbeat cost in the worker",
        "",
        f"CPU a worker's main process spends on heartbeats (`tasktrail.heartbeat`). Three idle "
        f"solo workers of the same app side by side for {window:.0f} s (process tree CPU from "
        "/proc, tick 10 ms), and one beat built and written from the bench process "
        f"({beat['beats']:,.0f} beats, median of 5 runs: {beat['cpu_us']:.0f} µs CPU, "
        f"{beat['wall_us']:.0f} µs wall, client side, Redis round trip included in wall).",
        "",
        "| | heartbeats off | every 5 s (default) | every 1 s |",
        "|---|---|---|---|",
        *rows,
        "",
    ]


if __name__ == "__main__":
    sys.exit("run it as: python -m bench --only heartbeat")

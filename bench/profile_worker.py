"""Where a worker variant spends its CPU: ``python -m bench.profile_worker``.

    python -m bench.profile_worker [--variant recorder-tracing] [--tasks 20000] [--seconds 10]

Pre-publishes the tasks (as ``python -m bench`` does), starts the worker (and, for the tracing
variant, the loopback OTLP sink), records the worker's processes with ``py-spy record --raw
--subprocesses`` while it drains, and prints the share of the pool processes' samples per frame
(inclusive), plus the CPU the sink used. Raw stacks are kept in ``bench/results/profile-*.txt``.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", default="recorder-tracing")
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--sleep-ms", type=float, default=0.0)
    parser.add_argument("--top", type=int, default=45)
    options = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    os.environ.setdefault("TASKTRAIL_EMBEDDED_REDIS", "1")  # used only without REDIS_URL
    import django

    django.setup()
    from django.conf import settings

    from bench import worker_overhead as wo
    from bench.context import Bench

    log_dir = RESULTS / "logs-profile"
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)
    bench = Bench(settings.REDIS_URL, settings.DATABASE_URL, log_dir)
    raw = RESULTS / f"profile-{options.variant}.txt"
    try:
        variant = options.variant
        queue = bench.queue("profile")
        env = bench.child_env(
            BENCH_VARIANT=variant,
            BENCH_QUEUE=queue,
            BENCH_COUNTER=bench.key("counter"),
            BENCH_STREAM=bench.stream("events"),
            BENCH_SLEEP_MS=str(options.sleep_ms),
        )
        sink = wo._otlp_sink(bench, env, 0, variant) if variant in wo.TRACED else None
        if sink is not None:
            env = {**env, **sink[1]}
        prefix = bench.task_prefix("profile")
        wo._publish(bench, env, variant, 0, options.tasks, prefix, queue)
        worker = bench.procs.python(
            "worker",
            ["-m", "celery", "-A", "bench.app", "worker", "-Q", queue, "-n", "profile@%h",
             *wo.WORKER_ARGS],
            env,
        )  # fmt: skip
        time.sleep(3)  # started and draining
        sink_cpu = sink[0].cpu_seconds() if sink else None
        subprocess.run(
            [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(worker.pid),
             "--subprocesses", "--duration", str(int(options.seconds)), "--rate", "200",
             "--format", "raw", "--output", str(raw), "--nonblocking"],
            check=True, capture_output=True,
        )  # fmt: skip
        if sink is not None and sink_cpu is not None:
            used = (sink[0].cpu_seconds() or 0) - sink_cpu
            print(f"OTLP sink CPU during the profile: {used:.2f} s over {options.seconds:.0f} s")
        bench.procs.stop(worker)
        wo._delete_rows(prefix)
    finally:
        bench.close()
    summarize(raw, options.top)
    return 0


def summarize(raw: Path, top: int) -> None:
    """Inclusive share of samples per frame over the pool processes (every thread: the task path,
    the recorder's flush thread, the span exporter's thread), and the main process's share."""
    inclusive: collections.Counter[str] = collections.Counter()
    pool = main = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = stack.split(";")
        count = int(count_text)
        if len(frames) < 2 or not frames[1].startswith("process "):  # the worker's main process
            main += count
            continue
        pool += count
        seen = set()
        for frame in frames[2:]:
            function, _, where = frame.partition(" (")
            name = f"{function} ({where.split(':')[0].rsplit('site-packages/', 1)[-1]})"
            if name not in seen:
                seen.add(name)
                inclusive[name] += count
    print(f"samples: main process {main}, pool processes {pool}; inclusive share of the pool's:")
    for name, count in inclusive.most_common(top):
        print(f"{count / max(pool, 1):6.1%}  {name}")


if __name__ == "__main__":
    raise SystemExit(main())

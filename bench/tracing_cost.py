"""What tracing costs per task, in one process: ``python -m bench.tracing_cost``.

    python -m bench.tracing_cost --mode otlp|none|off [--tasks 20000]

Runs ``bench.noop`` through Celery's task tracer (``Task.apply``: the same ``build_tracer`` path a
pool process runs, with the ``task_prerun``/``task_postrun`` signals the OpenTelemetry
instrumentation uses) in this process, with tracing set up as a worker sets it up
(``tasktrail.tracing.setup.setup("worker")``), and prints the CPU time (user + system, all
threads: the batch processor's export thread included) per task. Modes: ``off`` (tracing off),
``none`` (spans created, nothing exported: ``OTEL_TRACES_EXPORTER=none``), ``otlp`` (exported
over OTLP/HTTP to ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``; start ``python -m bench.otlp_sink``
first). Subtracting modes splits the cost into the span work in the task's path and the export.
Needs ``REDIS_URL`` (the task's INCR); one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("off", "none", "otlp"), required=True)
    parser.add_argument("--tasks", type=int, default=20_000)
    options = parser.parse_args(argv)
    if options.mode == "none":
        os.environ["OTEL_TRACES_EXPORTER"] = "none"
    elif options.mode == "off":
        os.environ["OTEL_SDK_DISABLED"] = "true"
    os.environ.setdefault("BENCH_VARIANT", "plain")

    from bench.app import noop
    from tasktrail.tracing import setup as tracing

    on = tracing.setup("worker")
    for n in range(500):  # warm-up: imports, connections, first spans
        noop.apply((n,))
    tracing.flush()
    cpu, wall = time.process_time(), time.perf_counter()
    for n in range(options.tasks):
        noop.apply((n,))
    tracing.flush(30)  # the export of the timed spans belongs to their cost
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(
        json.dumps(
            {
                "mode": options.mode,
                "tracing": on,
                "tasks": options.tasks,
                "cpu_us_per_task": cpu / options.tasks * 1e6,
                "wall_us_per_task": wall / options.tasks * 1e6,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

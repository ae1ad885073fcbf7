"""``python -m bench.alerts``: Redis time of one alert check cycle over N queues (default 50).

Target (issue 6): at most 50 ms of Redis time per cycle over 50 queues, pipelined.

Each of the run's queues (``bench.<run>.alerts.<i>``) gets M messages stamped with a publish time
(a third of them in the priority sub-queues) and a kombu binding, so the check finds it as it would
find a real one. ``CheckRunner.run_once`` — the monitor's own code — runs C times against a stream
of the run's own; the Redis time is what its ``RedisTimer`` measures around each Redis round trip.
The workers' answer is a stub (the monitor asks them in a background thread, outside the cycle);
mail goes out from a thread of its own, not measured here: thresholds are the defaults and nothing
is stuck.

Two figures: cycles that reuse the queue list (all but one every 30 s) and cycles that re-read it
(a SCAN over kombu's bindings, whose cost grows with the size of the Redis keyspace). Every key
the run created is deleted on the way out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.alerts", description=__doc__)
    parser.add_argument("--queues", type=int, default=50, help="Queues checked (default 50).")
    parser.add_argument("--messages", type=int, default=100, help="Messages per queue (100).")
    parser.add_argument("--cycles", type=int, default=50, help="Cycles measured (default 50).")
    return parser.parse_args(argv)


def fill(bench: Any, queues: int, messages: int) -> list[str]:
    from workers.broker import PRIORITY_SEP, PRIORITY_STEPS

    names = [bench.queue("alerts", i) for i in range(queues)]
    now = time.time()
    pipe = bench.client.pipeline(transaction=False)
    for name in names:
        pipe.sadd(f"_kombu.binding.{name}", f"{name}{PRIORITY_SEP}{PRIORITY_SEP}{name}")
        for m in range(messages):
            headers = {"id": f"bench-{name}-{m}", "task": "bench.noop", "tasktrail_published": now}
            body = json.dumps({"body": "", "headers": headers, "properties": {}})
            pipe.lpush(f"{name}{PRIORITY_SEP}{PRIORITY_STEPS[-1]}" if m % 3 == 1 else name, body)
    pipe.execute()
    return names


def measure(bench: Any, names: list[str], cycles: int) -> dict[str, Any]:
    from dashboard.alerts.runner import CheckRunner
    from dashboard.alerts.worker_probe import WorkersSeen

    seen = WorkersSeen(time.time(), {"bench@host": tuple(names)})
    runner = CheckRunner(
        client=bench.client, probe=lambda: seen, stream=bench.stream("alerts", "events")
    )
    cold = runner.run_once()  # reads the queue list (SCAN + one pipeline of SMEMBERS)
    checked = [v.subject for v in cold.verdicts if v.subject in set(names)]
    assert len(checked) == len(names), f"checked {len(checked)} of {len(names)} queues"
    warm = []
    wall = []
    for _ in range(cycles):
        started = time.perf_counter()
        report = runner.run_once()
        wall.append(time.perf_counter() - started)
        warm.append((report.redis_seconds, report.redis_round_trips))
    rtt = []
    for _ in range(20):
        started = time.perf_counter()
        bench.client.ping()
        rtt.append(time.perf_counter() - started)
    seconds = [s for s, _ in warm]
    return {
        "queues": len(names),
        "cycles": cycles,
        "redis_ms_median": statistics.median(seconds) * 1000,
        "redis_ms_max": max(seconds) * 1000,
        "round_trips": warm[0][1],
        "redis_ms_with_queue_list": cold.redis_seconds * 1000,
        "round_trips_with_queue_list": cold.redis_round_trips,
        "cycle_ms_median": statistics.median(wall) * 1000,
        "ping_ms_median": statistics.median(rtt) * 1000,
        "keyspace": bench.client.dbsize(),
    }


def main(argv: list[str]) -> int:
    options = parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    os.environ.setdefault("TASKTRAIL_EMBEDDED_REDIS", "1")  # used only without REDIS_URL
    import django

    django.setup()  # starts the embedded Valkey when REDIS_URL is not set
    from django.conf import settings
    from django.core.management import call_command

    from bench.context import Bench
    from bench.machine import safe_url

    call_command("migrate", interactive=False, verbosity=0)
    bench = Bench(settings.REDIS_URL, settings.DATABASE_URL, settings.VAR_DIR)
    try:
        names = fill(bench, options.queues, options.messages)
        result = measure(bench, names, options.cycles)
    finally:
        bench.close()
    print(f"alert check over {result['queues']} queues x {options.messages} messages")
    print(f"  redis: {safe_url(settings.REDIS_URL)}, {result['keyspace']} keys")
    print(
        f"  Redis time per cycle: median {result['redis_ms_median']:.2f} ms, "
        f"max {result['redis_ms_max']:.2f} ms, {result['round_trips']} round trips "
        f"(target: <= 50 ms)"
    )
    print(
        f"  with the queue list re-read (every 30 s): {result['redis_ms_with_queue_list']:.2f} ms, "
        f"{result['round_trips_with_queue_list']} round trips"
    )
    print(
        f"  whole cycle (Redis + database + Python): median {result['cycle_ms_median']:.1f} ms; "
        f"Redis PING {result['ping_ms_median']:.3f} ms"
    )
    return 0 if result["redis_ms_max"] <= 50 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

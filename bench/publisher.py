"""Publish ``bench.noop`` tasks in a process of its own: ``python -m bench.publisher``.

Used by the driver for two things, each in a fresh process so that whether the recorder is installed
(``BENCH_VARIANT=recorder``) never leaks into another measurement:

- pre-publishing the tasks a worker will drain (``--id-prefix``: task ids the driver can find and
  delete afterwards);
- timing ``apply_async`` (``--warmup`` calls first, untimed: connection, queue declaration, first
  stream flush).

Prints one JSON line: ``{"calls": …, "seconds": …, "us_per_call": …}``.
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, required=True, help="Timed calls.")
    parser.add_argument("--warmup", type=int, default=0, help="Untimed calls first.")
    parser.add_argument("--id-prefix", default="", help="Task ids <prefix><n> (default: uuids).")
    options = parser.parse_args()

    from bench.app import TRACED, VARIANT, noop

    if VARIANT in TRACED:
        from tasktrail.tracing.setup import setup

        setup("bench-publisher")  # messages carry traceparent: the worker continues the traces
    prefix: str = options.id_prefix
    for n in range(options.warmup):
        noop.apply_async((n,), task_id=f"{prefix}w{n}" if prefix else None)
    start = time.perf_counter()
    if prefix:
        for n in range(options.count):
            noop.apply_async((n,), task_id=f"{prefix}{n}")
    else:
        for n in range(options.count):
            noop.apply_async((n,))
    seconds = time.perf_counter() - start

    if VARIANT in ("recorder", *TRACED):
        from tasktrail import recorder

        recorder.flush()  # the published events, before the process exits (not timed)
    if VARIANT in TRACED:
        from tasktrail.tracing.setup import shutdown

        shutdown()  # the producer spans (not timed)
    calls = options.count
    print(json.dumps({"calls": calls, "seconds": seconds, "us_per_call": seconds / calls * 1e6}))


if __name__ == "__main__":
    main()

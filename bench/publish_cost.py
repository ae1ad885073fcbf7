"""Section 3: what the recorder adds to ``apply_async`` on the producer side.

Each measurement is a fresh ``python -m bench.publisher`` process (the recorder installs itself for
the life of a process, so "with" and "without" must not share one): untimed warm-up calls, then C
timed ``noop.apply_async((n,))`` calls to a Redis broker. The two modes alternate, in reverse order
every other round; the median over rounds is reported. With the recorder, the events go to a stream
of the run's own through the recorder's background flush thread, whose cost lands in the timed calls
as it would in a web process.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from bench.context import Bench

MODES: Final = ("plain", "recorder")


@dataclass(frozen=True)
class Measurement:
    mode: str
    round: int
    calls: int
    us_per_call: float


def run(
    bench: Bench, *, calls: int, warmup: int, rounds: int, log: Callable[[str], None]
) -> list[Measurement]:
    results: list[Measurement] = []
    for round_no in range(1, rounds + 1):
        order = MODES if round_no % 2 else tuple(reversed(MODES))
        for mode in order:
            log(f"publish cost: round {round_no}/{rounds}, {mode}, {calls} calls")
            result = measure(bench, mode, round_no, calls, warmup)
            log(f"  {result.us_per_call:.0f} µs per apply_async")
            results.append(result)
    return results


def measure(bench: Bench, mode: str, round_no: int, calls: int, warmup: int) -> Measurement:
    env = bench.child_env(
        BENCH_VARIANT=mode,
        BENCH_QUEUE=bench.queue("publish", mode, round_no),
        BENCH_STREAM=bench.stream("publish", mode, round_no),
    )
    try:
        output = bench.procs.run_python(
            f"publish-cost-{mode}-{round_no}",
            ["-m", "bench.publisher", "--count", str(calls), "--warmup", str(warmup)],
            env,
            timeout=60 + calls / 100,
        )
    finally:
        bench.cleanup()
    reply = json.loads(output.strip().splitlines()[-1])
    return Measurement(mode=mode, round=round_no, calls=calls, us_per_call=reply["us_per_call"])

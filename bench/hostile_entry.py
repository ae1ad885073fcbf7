"""Section "hostile": what one 16 MiB stream entry costs the monitor, hostile against normal.

Each case is one entry just under the 16 MiB the monitor reads, XADDed to a stream of the run's
own; then a fresh monitor process (``python -m bench.hostile_entry --stream …``, the real
``Monitor`` with the settings' database) drains it. The child reports the drain's wall time, its
RSS before the drain and its peak RSS during it (VmHWM, reset before the drain where the kernel
allows), the events written, items rejected, dead letters added and log lines written.

Cases:

- normal: 2,000 valid "published" events (the writers' batch) with ~8 KiB of arguments each: all
  written as rows, the cost of an entry of that size the monitor must take.
- tiny items: 16.7 million empty maps (1 byte each), as in the attack that stalled the monitor
  for 4.5 s at 100 KB.
- nested: 4,000 events (the cap), each holding 3,616 nested lists in ~3.6 KiB.
- long names: 4,000 events with a 4 KiB task name (each refused, "longer than 255").
- one huge text: one event whose traceback is 16 MiB.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgpack

from bench.context import Bench

SIZE = 16 * 1024 * 1024 - 64  # within tasktrail.events.MAX_ENTRY_BYTES
T0 = 1_750_000_000.0


@dataclass(frozen=True)
class Case:
    name: str
    describe: str
    build: Callable[[str], bytes]  # task-id prefix -> packed "e" field


def _event(task_id: str, **fields: object) -> dict[str, object]:
    return {"v": 1, "kind": "published", "task_id": task_id, "ts": T0, **fields}


def normal(prefix: str) -> bytes:
    count = 2000
    filler = len(msgpack.packb(_event(f"{prefix}{0:06d}", name="bench.noop", args="")))
    args = "[" + "7" * (SIZE // count - filler - 8) + "]"
    events = [_event(f"{prefix}{i:06d}", name="bench.noop", args=args) for i in range(count)]
    return msgpack.packb(events, use_bin_type=True)


def tiny_items(prefix: str) -> bytes:
    count = SIZE - 5
    return msgpack.Packer().pack_array_header(count) + b"\x80" * count


def nested(prefix: str) -> bytes:
    count = 4000
    item = msgpack.packb(_event(f"{prefix}n", x=[[[[]] * 15] * 15] * 15))  # ~3.6 KiB, 3,616 lists
    return msgpack.Packer().pack_array_header(count) + item * count


def long_names(prefix: str) -> bytes:
    count = 4000
    bare = len(msgpack.packb(_event(f"{prefix}l", name="")))
    item = msgpack.packb(_event(f"{prefix}l", name="n" * (SIZE // count - bare - 8)))
    return msgpack.Packer().pack_array_header(count) + item * count


def huge_text(prefix: str) -> bytes:
    return msgpack.packb([_event(f"{prefix}h", traceback="t" * (SIZE - 100))])


CASES = (
    Case("normal", "2,000 valid events, ~8 KiB of arguments each (all written)", normal),
    Case("tiny items", "16.7M empty maps of 1 byte", tiny_items),
    Case("nested", "4,000 events, each ~3.6 KiB of nested lists", nested),
    Case("long names", "4,000 events with a 4 KiB task name", long_names),
    Case("one huge text", "1 event with a 16 MiB traceback", huge_text),
)


def run(bench: Bench, log: Callable[[str], None]) -> list[str]:
    from dashboard.models import TaskAttempt, TaskRun

    results: list[tuple[Case, int, dict[str, float]]] = []
    for case in CASES:
        stream = bench.stream("hostile", case.name.replace(" ", "-"))
        prefix = bench.task_prefix("hostile", case.name.replace(" ", "-"))
        packed = case.build(prefix)
        bench.client.xadd(stream, {b"e": packed})
        del packed
        log(f"hostile entry: {case.name}, {bench.client.xinfo_stream(stream)['length']} entry")
        try:
            output = bench.procs.run_python(
                f"hostile-{case.name.replace(' ', '-')}",
                ["-m", "bench.hostile_entry", "--stream", stream],
                bench.child_env(),
                timeout=900,
            )
            reply = json.loads(output.strip().splitlines()[-1])
            reply["dead_letters"] = bench.client.xlen(stream + ":dead")
            first = bench.client.xrange(stream + ":dead", count=1)
            reply["first_reason"] = first[0][1][b"reason"].decode()[:120] if first else ""
            reply["left"] = bench.client.xlen(stream)
        finally:
            bench.cleanup()
            for model in (TaskAttempt, TaskRun):
                model.objects.filter(task_id__startswith=prefix).delete()
        size = len(case.build(prefix))
        log(
            f"  {reply['seconds']:.2f} s, peak RSS {reply['peak_mb']:.0f} MB "
            f"(+{reply['peak_mb'] - reply['before_mb']:.0f}); {reply['events']} events, "
            f"{reply['rejected']} rejected, {reply['dead_letters']} dead letters, "
            f"{reply['log_lines']} log lines; first dead letter: {reply['first_reason'] or '-'}"
        )
        results.append((case, size, reply))
    return markdown(results)


def markdown(results: list[tuple[Case, int, dict[str, float]]]) -> list[str]:
    lines = [
        "## Hostile stream entry",
        "",
        "One entry of ~16 MiB (the most the monitor reads) drained by a fresh monitor process "
        "(`bench/hostile_entry.py`): wall time of the drain, RSS before it and its peak during "
        "it, what it wrote. The normal entry's time is mostly writing its 2,000 rows.",
        "",
        "| entry | bytes | drain s | RSS before MB | peak RSS MB | events written | items "
        "rejected | dead letters | log lines |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for case, size, r in results:
        lines.append(
            f"| {case.name}: {case.describe} | {size:,} | {r['seconds']:.2f} | "
            f"{r['before_mb']:.0f} | {r['peak_mb']:.0f} | {r['events']:,} | {r['rejected']:,} | "
            f"{r['dead_letters']:,} | {r['log_lines']:,} |"
        )
    return lines


# -- the child: one monitor draining the stream --------------------------------------------------


def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.lines += 1


def child(stream: str) -> dict[str, float]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    import django

    django.setup()
    import redis
    from django.conf import settings

    from dashboard.ingest.monitor import Monitor
    from dashboard.ingest.stream import StreamConsumer

    counter = _Count()
    logger = logging.getLogger("tasktrail")
    logger.addHandler(counter)
    logger.setLevel(logging.WARNING)
    for handler in list(logger.handlers):  # count the lines, do not print 4,000 of them
        if handler is not counter:
            logger.removeHandler(handler)
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=60)
    monitor = Monitor(StreamConsumer(client, stream, consumer="hostile"), event_keys=())
    monitor.consumer.ensure_group()
    before = _rss_mb("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # resets the peak RSS to the current RSS
    except OSError:
        pass
    started = time.perf_counter()
    stats = monitor.run(drain=True)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "before_mb": before,
        "peak_mb": _rss_mb("VmHWM"),
        "events": stats.events,
        "rejected": stats.rejected,
        "log_lines": counter.lines,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hostile_entry")
    parser.add_argument("--stream", required=True)
    options = parser.parse_args(argv)
    print(json.dumps(child(options.stream)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

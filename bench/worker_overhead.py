"""Section 1: what recording costs a worker, beside plain Celery and django-celery-results.

Method (as in the anchor measurements, ``/work/shared/research/anchor-measurements.md``):
pre-publish N no-op tasks to a fresh queue, start a prefork worker ``-c 2`` on it, watch the Redis
counter the task increments and take the consume rate from the 200th to the N-th completion, then
stop the worker (SIGTERM, wait). Variants run one after the other within a round, in reverse order
every other round, so slow drift of the (shared) machine spreads over all of them; medians are
reported.

The recorder variant publishes with the recorder installed (so the worker sees the publish-time
headers, as in production) and runs ``manage.py monitor`` beside the worker, reading the run's own
stream and writing rows into the database: its CPU is part of the cost measured. It runs with
``--no-alerts``: the alert checks look at every queue of the broker and mail people, which a
benchmark must not do to a real installation, and their cost is per check (every few seconds), not
per task. The monitor starts
before the worker and writes the N "published" events first (its start-up and that one-off backlog
would otherwise fall into the timed window in some rounds and not others); in the window it writes
the events the worker produces, three per task.

Two task kinds: ``noop`` (one Redis INCR) and ``io10`` (``time.sleep(0.01)`` then the INCR: an
I/O-bound task that waits 10 ms without using the CPU, like a call to another service). Kinds
alternate within a round like the variants.

The Flower variant runs the worker with ``-E`` (task events on) and Flower 2.x as a real process
consuming them (``bench.flower``); its RSS after the drain is reported.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from django.db.models import Count

from bench import flower as bench_flower
from bench.context import Bench
from bench.procs import ChildFailed, Process
from bench.rss import tree_rss_mb

VARIANTS: Final[dict[str, str]] = {
    "plain": "(a) plain Celery: no Django, no result backend",
    "recorder": "(b) + tasktrail recorder; `manage.py monitor` writing rows",
    "recorder-alone": "(b') + tasktrail recorder; no monitor until the worker has finished",
    "recorder-tracing": "(b+t) (b) + OpenTelemetry tracing on, OTLP/HTTP to a loopback sink",
    "recorder-tracing-10pct": "(b+t10) extra row: (b+t) with 10% of traces sampled",
    "djdb": "(c) django-celery-results, Celery default (DB connection closed after every task)",
    "djdb-reuse": "(d) django-celery-results + CELERY_DB_REUSE_MAX + track_started + extended",
    "flower": "(e) task events on (`-E`), Flower 2.2 consuming them",
}
KINDS: Final[dict[str, float]] = {"noop": 0.0, "io10": 10.0}  # kind -> ms the task sleeps
# (b') is a diagnostic (how much of (b)'s cost is the monitor's CPU): run it with --only.
DEFAULT_VARIANTS: Final = (
    "plain", "recorder", "recorder-tracing", "recorder-tracing-10pct", "djdb", "djdb-reuse",
    "flower",
)  # fmt: skip
TRACED: Final = ("recorder-tracing", "recorder-tracing-10pct")  # an OTLP sink runs beside
MONITORED: Final = ("recorder", *TRACED)  # variants measured with a monitor beside
SAMPLERS: Final = {"recorder-tracing-10pct": ("parentbased_traceidratio", "0.1")}
KIND_ONLY: Final = {"recorder-tracing-10pct": "noop"}  # extra rows run for one task kind only
WARMUP_TASKS: Final = 200
POLL_SECONDS: Final = 0.005
STALL_SECONDS: Final = 120.0  # no task finished for this long: something is broken, stop
DRAIN_TIMEOUT: Final = 180.0
WORKER_ARGS: Final = (
    "-P", "prefork", "-c", "2", "--without-gossip", "--without-mingle", "--without-heartbeat",
)  # fmt: skip


@dataclass(frozen=True)
class Measurement:
    variant: str
    kind: str
    round: int
    tasks_per_second: float
    counted: int  # completions inside the timed window
    seconds: float
    worker_cpu_ms: float | None = None  # CPU per task in the window: worker and its pool
    monitor_cpu_ms: float | None = None  # recorder: CPU per task in the window: monitor
    sink_cpu_ms: float | None = None  # tracing: CPU per task in the window: the OTLP sink
    backlog_entries: int | None = None  # recorder: stream entries not yet written at the last task
    check: str = ""  # what was found in the database afterwards
    flower_rss_mb: float | None = None  # Flower's RSS after the drain


def run(
    bench: Bench,
    variants: Sequence[str],
    *,
    tasks: Mapping[str, int],
    rounds: Mapping[str, int],
    log: Callable[[str], None],
) -> list[Measurement]:
    """``tasks``: N per task kind (the kinds to run); ``rounds``: rounds per kind."""
    if min(tasks.values()) <= WARMUP_TASKS:
        raise ValueError(f"N must be more than the {WARMUP_TASKS} warm-up tasks")
    results: list[Measurement] = []
    for round_no in range(1, max(rounds[kind] for kind in tasks) + 1):
        kinds = [kind for kind in tasks if round_no <= rounds[kind]]
        kinds = kinds if round_no % 2 else kinds[::-1]
        order = list(variants) if round_no % 2 else list(reversed(variants))
        pairs = [(k, v) for k in kinds for v in order if KIND_ONLY.get(v, k) == k]
        for kind, variant in pairs:
            n = tasks[kind]
            log(f"worker overhead: round {round_no}/{rounds[kind]}, {kind}, {variant}, {n} tasks")
            result = measure(bench, variant, kind, round_no, n)
            extra = ""
            if result.backlog_entries is not None:
                extra = f"; entries not yet written at the last task: {result.backlog_entries}"
            cpu = _cpu_text(result)
            log(f"  {result.tasks_per_second:.0f} tasks/s{cpu}{extra}; {result.check}")
            results.append(result)
    return results


def measure(bench: Bench, variant: str, kind: str, round_no: int, tasks: int) -> Measurement:
    queue = bench.queue("worker", variant, kind, round_no)
    counter = bench.key("counter", variant, kind, round_no)
    stream = bench.stream("events", variant, kind, round_no)
    prefix = bench.task_prefix(variant, kind, round_no)
    env = bench.child_env(
        BENCH_VARIANT=variant,
        BENCH_QUEUE=queue,
        BENCH_COUNTER=counter,
        BENCH_STREAM=stream,
        BENCH_SLEEP_MS=str(KINDS[kind]),
        BENCH_EVENT_EXCHANGE=bench.queue("celeryev", variant, kind, round_no),
    )
    sink = _otlp_sink(bench, env, round_no, variant) if variant in TRACED else None
    if sink is not None:
        env = {**env, **sink[1]}
    flower: tuple[Process, int] | None = None
    flower_rss = None
    try:
        _publish(bench, env, variant, round_no, tasks, prefix, queue)
        monitor: Process | None = None
        try:
            if variant == "flower":
                flower = bench_flower.start(bench, f"flower-{kind}-{round_no}", env)
            if variant in MONITORED:
                monitor = bench.procs.python(
                    f"monitor-{round_no}",
                    ["manage.py", "monitor", "--consumer", f"bench-{round_no}", "--no-alerts"],
                    {**env, "TASKTRAIL_STREAM": stream},
                )
                # Let it write the N published events first, so its start-up and that backlog do
                # not land in the timed window: the window holds the steady work of the worker's
                # events (received, started, succeeded).
                _wait_drained(bench, stream, monitor)
            worker = bench.procs.python(
                f"worker-{variant}-{round_no}",
                ["-m", "celery", "-A", "bench.app", "worker", "-Q", queue,
                 "-n", f"bench-{variant}-{round_no}@%h", *WORKER_ARGS,
                 *(["-E"] if variant == "flower" else [])],
                env,
            )  # fmt: skip
            try:
                watched = _watch(bench, counter, tasks, worker, monitor, sink[0] if sink else None)
                backlog = int(bench.client.xlen(stream)) if monitor else None
            finally:
                code = bench.procs.stop(worker)
            if code not in (0, None):
                raise ChildFailed(f"worker exited with {code}\n{worker.tail()}")
            if variant == "recorder-alone":  # write the rows now, to check them
                bench.procs.run_python(
                    f"monitor-drain-{round_no}",
                    ["manage.py", "monitor", "--drain"],
                    {**env, "TASKTRAIL_STREAM": stream},
                    timeout=DRAIN_TIMEOUT,
                )
            if monitor is not None:  # every event written before the rows are checked
                _wait_drained(bench, stream, monitor)
            if flower is not None:
                flower_rss = tree_rss_mb(flower[0].pid)
                check = _check_flower(flower[1], tasks)
        finally:
            if monitor is not None:
                bench.procs.stop(monitor)
            if flower is not None:
                bench.procs.stop(flower[0])
        if flower is None:
            check = _check_rows(variant, prefix, tasks)
    finally:
        if sink is not None:
            bench.procs.stop(sink[0])
        _delete_rows(prefix)
        bench.cleanup()
    return Measurement(
        variant=variant,
        kind=kind,
        round=round_no,
        tasks_per_second=watched.rate,
        counted=watched.counted,
        seconds=watched.end - watched.start,
        worker_cpu_ms=watched.cpu_ms_per_task(watched.worker_cpu),
        monitor_cpu_ms=watched.cpu_ms_per_task(watched.monitor_cpu),
        sink_cpu_ms=watched.cpu_ms_per_task(watched.sink_cpu),
        backlog_entries=backlog,
        check=check,
        flower_rss_mb=flower_rss,
    )


def _publish(
    bench: Bench,
    env: dict[str, str],
    variant: str,
    round_no: int,
    tasks: int,
    prefix: str,
    queue: str,
) -> None:
    # The producer has the recorder too in the recorder variant (publish headers, published events).
    records = variant.startswith("recorder")
    as_variant = variant if variant in TRACED else "recorder" if records else "plain"
    publisher_env = {**env, "BENCH_VARIANT": as_variant}
    bench.procs.run_python(
        f"publish-{variant}-{round_no}",
        ["-m", "bench.publisher", "--count", str(tasks), "--id-prefix", prefix],
        publisher_env,
        timeout=60 + tasks / 200,
    )
    waiting = int(bench.client.llen(queue))
    if waiting != tasks:
        raise RuntimeError(f"published {tasks} tasks but {waiting} are waiting in {queue}")


@dataclass(frozen=True)
class _Watched:
    start: float
    end: float
    counted: int
    worker_cpu: float | None  # CPU seconds used in the window
    monitor_cpu: float | None
    sink_cpu: float | None

    @property
    def rate(self) -> float:
        return self.counted / (self.end - self.start)

    def cpu_ms_per_task(self, cpu: float | None) -> float | None:
        return None if cpu is None else cpu * 1000 / self.counted


def _cpu_used(process: Process | None, since: float | None) -> float | None:
    now = process.cpu_seconds() if process is not None else None
    return None if now is None or since is None else now - since


def _watch(
    bench: Bench,
    counter: str,
    tasks: int,
    worker: Process,
    monitor: Process | None,
    sink: Process | None,
) -> _Watched:
    """Poll the counter; the window runs from the first reading >= 200 to the first >= N."""
    children = [worker, *([monitor] if monitor else [])]
    start: float | None = None
    start_count = 0
    worker_cpu = monitor_cpu = sink_cpu = None
    last_count, last_change = -1, time.perf_counter()
    while True:
        count = int(bench.client.get(counter) or 0)
        now = time.perf_counter()
        if count != last_count:
            last_count, last_change = count, now
        if start is None and count >= WARMUP_TASKS:
            start, start_count = now, count
            worker_cpu = worker.cpu_seconds()
            monitor_cpu = monitor.cpu_seconds() if monitor else None
            sink_cpu = sink.cpu_seconds() if sink else None
        if count >= tasks and start is not None:
            return _Watched(
                start=start,
                end=now,
                counted=count - start_count,
                worker_cpu=_cpu_used(worker, worker_cpu),
                monitor_cpu=_cpu_used(monitor, monitor_cpu),
                sink_cpu=_cpu_used(sink, sink_cpu),
            )
        if now - last_change > STALL_SECONDS:
            raise ChildFailed(
                f"no task finished for {STALL_SECONDS:.0f}s ({count}/{tasks} done)\n"
                + "\n".join(child.tail() for child in children)
            )
        for child in children:
            if not child.running():
                raise ChildFailed(f"{child.name} exited early\n{child.tail()}")
        time.sleep(POLL_SECONDS)


def _otlp_sink(
    bench: Bench, env: dict[str, str], round_no: int, variant: str
) -> tuple[Process, dict[str, str]]:
    """A loopback OTLP receiver for the tracing variant, and the OTEL_* variables pointing at it."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    sink = bench.procs.python(
        f"otlp-sink-{round_no}", ["-m", "bench.otlp_sink", "--port", str(port)], env
    )
    deadline = time.perf_counter() + 30
    while True:  # listening before anything exports to it
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.perf_counter() > deadline or not sink.running():
                raise ChildFailed(f"the OTLP sink did not start\n{sink.tail()}") from None
            time.sleep(0.05)
    # every task traced, except in the sampled extra row
    sampler, ratio = SAMPLERS.get(variant, ("parentbased_always_on", ""))
    otel = {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{port}/v1/traces",
        "OTEL_TRACES_SAMPLER": sampler,
        "OTEL_TRACES_SAMPLER_ARG": ratio,
    }
    return sink, otel


def _wait_drained(bench: Bench, stream: str, monitor: Process) -> None:
    """Wait until the monitor has written (and deleted) every entry of the stream."""
    deadline = time.perf_counter() + DRAIN_TIMEOUT
    while bench.client.xlen(stream):
        if not monitor.running():
            raise ChildFailed(f"monitor exited early\n{monitor.tail()}")
        if time.perf_counter() > deadline:
            raise ChildFailed(
                f"monitor still behind after {DRAIN_TIMEOUT:.0f}s "
                f"({bench.client.xlen(stream)} entries left)\n{monitor.tail()}"
            )
        time.sleep(0.02)


def _check_flower(port: int, tasks: int) -> str:
    """What Flower holds once the worker has finished (its events may still be arriving)."""
    deadline = time.perf_counter() + 30
    while True:
        states = bench_flower.task_states(port)
        if states.get("SUCCESS", 0) >= tasks or time.perf_counter() > deadline:
            return f"Flower holds {_states(states)} of {tasks}"
        time.sleep(0.5)


def _check_rows(variant: str, prefix: str, tasks: int) -> str:
    """What the database holds for this measurement's tasks (a check of the set-up, not timed)."""
    if variant.startswith("recorder"):
        from dashboard.models import TaskAttempt, TaskRun

        states = dict(
            TaskRun.objects.filter(task_id__startswith=prefix)
            .values_list("state")
            .annotate(n=Count("id"))
            .values_list("state", "n")
        )
        attempts = TaskAttempt.objects.filter(task_id__startswith=prefix).count()
        return f"TaskRun {_states(states)} of {tasks}, {attempts} TaskAttempt"
    if variant.startswith("djdb"):
        from django_celery_results.models import TaskResult

        states = dict(
            TaskResult.objects.filter(task_id__startswith=prefix)
            .values_list("status")
            .annotate(n=Count("id"))
            .values_list("status", "n")
        )
        return f"TaskResult {_states(states)} of {tasks}"
    return "no rows (no backend)"


def _states(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "none"


def _delete_rows(prefix: str) -> None:
    from django_celery_results.models import TaskResult

    from dashboard.models import TaskAttempt, TaskRun

    for model in (TaskRun, TaskAttempt, TaskResult):
        model.objects.filter(task_id__startswith=prefix).delete()


def _cpu_text(result: Measurement) -> str:
    parts = []
    if result.worker_cpu_ms is not None:
        parts.append(f"worker {result.worker_cpu_ms:.2f}")
    if result.monitor_cpu_ms is not None:
        parts.append(f"monitor {result.monitor_cpu_ms:.2f}")
    if result.sink_cpu_ms is not None:
        parts.append(f"OTLP sink {result.sink_cpu_ms:.3f}")
    return f" (CPU ms/task: {', '.join(parts)})" if parts else ""

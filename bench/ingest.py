"""Section 3: how fast monitor processes turn a stream backlog into rows, with 1 and 2 of them.

E events of realistic tasks (per task: published, received, started, succeeded; one task in ten
retried once by Celery and succeeding on its second attempt; one in twenty failing with a
traceback) are built with ``tasktrail.events.make_event``, ordered by time as they would arrive,
packed with ``encode_batch`` ~100 events to an entry and XADDed to a stream of the run's own. Then
P ``manage.py monitor --no-alerts`` processes (one consumer group, their default batch of 200
entries) drain it into the database. The rate is all E events over the time from the first
monitor's "reading" line (its start-up done, its loop about to begin) to the empty stream: process
start-up is not in it; a second monitor that starts a little later counts against the pair. The
rows (task ids with the measurement's prefix) are deleted afterwards.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

import redis

from bench.context import Bench
from bench.procs import ChildFailed, Process
from tasktrail.events import Event, encode_batch, make_event

EVENTS_PER_ENTRY: Final = 100
TASKS_PER_SECOND: Final = 1000.0  # spacing of the simulated traffic (orders events in entries)
HOSTS: Final = ("celery@worker-1", "celery@worker-2")
# (task name, queue, positional parameter names)
TASKS: Final = (
    ("shop.tasks.send_invoice", "default", ("order_id", "email")),
    ("shop.tasks.sync_inventory", "inventory", ("sku", "warehouse")),
    ("shop.tasks.charge_card", "payments", ("payment_id", "amount_cents")),
    ("shop.tasks.notify_customer", "default", ("customer_id", "template")),
)
TRACEBACK: Final = """Traceback (most recent call last):
  File "/srv/shop/.venv/lib/python3.12/site-packages/celery/app/trace.py", line 453, in trace_task
    R = retval = fun(*args, **kwargs)
                 ^^^^^^^^^^^^^^^^^^^^
  File "/srv/shop/.venv/lib/python3.12/site-packages/celery/app/trace.py", line 736, in __call__
    return self.run(*args, **kwargs)
           ^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/srv/shop/shop/tasks.py", line 88, in charge_card
    response = gateway.charge(payment_id, amount_cents, token=card_token)
               ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/srv/shop/shop/payments/gateway.py", line 142, in charge
    return self._post("/v2/charges", payload, idempotency_key=payment_id)
           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/srv/shop/shop/payments/gateway.py", line 97, in _post
    raise PaymentDeclined(f"card declined for payment {idempotency_key}: {body['reason']}")
shop.payments.gateway.PaymentDeclined: card declined for payment PAY-{n}: insufficient_funds
"""


PROCESSES: Final = (1, 2)
POLL_SECONDS: Final = 0.005
DRAIN_TIMEOUT: Final = 300.0
READY_LINE: Final = ": reading "  # "monitor <consumer>: reading <stream>"


@dataclass(frozen=True)
class Measurement:
    processes: int
    round: int
    events: int
    entries: int
    tasks: int
    rows: int  # TaskRun + TaskAttempt rows written
    seconds: float
    rejected: int
    check: str

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds


def run(
    bench: Bench,
    *,
    events: int,
    rounds: int,
    log: Callable[[str], None],
    processes: Sequence[int] = PROCESSES,
) -> list[Measurement]:
    results = []
    for round_no in range(1, rounds + 1):
        order = list(processes) if round_no % 2 else list(reversed(processes))
        for count in order:
            log(f"monitor ingest: round {round_no}/{rounds}, {count} monitor(s), {events} events")
            result = measure(bench, round_no, events, count)
            log(
                f"  {result.events_per_second:,.0f} events/s, {result.rows_per_second:,.0f} "
                f"rows/s ({result.seconds:.2f}s); {result.check}"
            )
            results.append(result)
    return results


def measure(bench: Bench, round_no: int, target_events: int, processes: int) -> Measurement:
    stream = bench.stream("ingest", processes, round_no)
    prefix = bench.task_prefix("ingest", processes, round_no)
    events, tasks, attempts = build_events(prefix, target_events, t0=time.time() - 3600)
    entries = _append(bench.client, stream, events)
    env = bench.child_env(TASKTRAIL_STREAM=stream)
    monitors = [
        bench.procs.python(
            f"ingest-monitor-{processes}-{round_no}-{i}",
            ["manage.py", "monitor", "--consumer", f"bench-ingest-{i}", "--no-alerts"],
            env,
        )
        for i in range(processes)
    ]
    try:
        start = _first_ready(monitors)
        deadline = time.perf_counter() + DRAIN_TIMEOUT
        while bench.client.xlen(stream):
            _check_running(monitors)
            if time.perf_counter() > deadline:
                raise ChildFailed(f"monitors still behind after {DRAIN_TIMEOUT:.0f}s")
            time.sleep(POLL_SECONDS)
        seconds = time.perf_counter() - start
        rows, check = _check_rows(prefix, tasks, attempts)
    finally:
        for monitor in monitors:
            bench.procs.stop(monitor)
        _delete_rows(prefix)
        bench.cleanup()
    return Measurement(
        processes=processes,
        round=round_no,
        events=len(events),
        entries=entries,
        tasks=tasks,
        rows=rows,
        seconds=seconds,
        rejected=0,
        check=check,
    )


def _first_ready(monitors: Sequence[Process]) -> float:
    """When the first monitor says it starts reading (printed just before its loop)."""
    deadline = time.perf_counter() + DRAIN_TIMEOUT
    while not any(READY_LINE in monitor.output() for monitor in monitors):
        _check_running(monitors)
        if time.perf_counter() > deadline:
            raise ChildFailed("no monitor started")
        time.sleep(POLL_SECONDS)
    return time.perf_counter()


def _check_running(monitors: Sequence[Process]) -> None:
    for monitor in monitors:
        if not monitor.running():
            raise ChildFailed(f"{monitor.name} exited early\n{monitor.tail()}")


# -- events --------------------------------------------------------------------------------------


def build_events(prefix: str, target: int, *, t0: float) -> tuple[list[Event], int, int]:
    """At least ``target`` events of whole tasks, in arrival order, and the task/attempt counts."""
    events: list[Event] = []
    tasks = attempts = 0
    while len(events) < target:
        story = task_story(f"{prefix}{tasks}", tasks, t0 + tasks / TASKS_PER_SECOND)
        events.extend(story)
        attempts += 1 + sum(1 for e in story if e["kind"] == "retried")
        tasks += 1
    events.sort(key=lambda e: e["ts"])
    return events, tasks, attempts


def task_story(task_id: str, n: int, t: float) -> list[Event]:
    """The events the recorder would write for one task (shapes as in ``tasktrail.recorder``)."""
    name, queue, arg_names = TASKS[n % len(TASKS)]
    input_id = f"{n + 100000}"
    args = json.dumps([int(input_id), "customer@example.com"], separators=(",", ":"))
    trace_id = f"{n:032x}"
    host = HOSTS[n % len(HOSTS)]
    pid = 4000 + n % 2
    traceparent = f"00-{trace_id}-{n:016x}-01"
    common = {"name": name, "traceparent": traceparent}

    def published(ts: float, retries: int, eta: float | None = None) -> Event:
        return make_event(
            "published", task_id, ts, queue=queue, retries=retries, eta=eta, published_at=ts,
            input_id=input_id, args=args, kwargs="{}", arg_names=",".join(arg_names),
            root_id=task_id, **common,
        )  # fmt: skip

    def received(ts: float, retries: int, published_at: float) -> Event:
        return make_event(
            "received", task_id, ts, queue=queue, retries=retries, hostname=host,
            published_at=published_at, input_id=input_id, root_id=task_id, **common,
        )  # fmt: skip

    def started(ts: float, retries: int, ready: float) -> Event:
        return make_event(
            "started", task_id, ts, retries=retries, hostname=host, pid=pid,
            queue_wait=ts - ready, **common,
        )  # fmt: skip

    def ended(kind: str, ts: float, retries: int, began: float, failed: bool) -> Event:
        error = (
            {
                "exc_type": "shop.payments.gateway.PaymentDeclined",
                "exc_message": f"card declined for payment PAY-{n}: insufficient_funds",
                "traceback": TRACEBACK.replace("{n}", str(n)),
            }
            if failed
            else {}
        )
        return make_event(
            kind,  # type: ignore[arg-type]
            task_id, ts, name=name, retries=retries, hostname=host, pid=pid,
            runtime=ts - began, **error,
        )  # fmt: skip

    runtime = 0.004 + (n % 7) * 0.003
    first = [
        published(t, 0),
        received(t + 0.002, 0, t),
        started(t + 0.003, 0, t),
    ]
    end = t + 0.003 + runtime
    if n % 10 == 5:  # Celery retry with a one-second countdown, then success
        eta = end + 1.0
        return [
            *first,
            published(end, 1, eta=eta),
            ended("retried", end + 0.0005, 0, t + 0.003, failed=True),
            received(end + 0.002, 1, end),
            started(eta + 0.001, 1, eta),
            ended("succeeded", eta + 0.001 + runtime, 1, eta + 0.001, failed=False),
        ]
    if n % 20 == 0:
        return [*first, ended("failed", end, 0, t + 0.003, failed=True)]
    return [*first, ended("succeeded", end, 0, t + 0.003, failed=False)]


def _chunks(events: Sequence[Event], size: int) -> Iterator[Sequence[Event]]:
    for start in range(0, len(events), size):
        yield events[start : start + size]


def _append(client: redis.Redis, stream: str, events: Sequence[Event]) -> int:
    entries = 0
    pipe = client.pipeline(transaction=False)
    for chunk in _chunks(events, EVENTS_PER_ENTRY):
        pipe.xadd(stream, encode_batch(chunk))  # type: ignore[arg-type]
        entries += 1
        if entries % 50 == 0:
            pipe.execute()
    pipe.execute()
    return entries


# -- rows ----------------------------------------------------------------------------------------


def _check_rows(prefix: str, tasks: int, attempts: int) -> tuple[int, str]:
    from dashboard.models import TaskAttempt, TaskRun

    task_rows = TaskRun.objects.filter(task_id__startswith=prefix).count()
    finished = TaskRun.objects.filter(
        task_id__startswith=prefix, state__in=("SUCCESS", "FAILURE")
    ).count()
    attempt_rows = TaskAttempt.objects.filter(task_id__startswith=prefix).count()
    check = (
        f"{task_rows}/{tasks} TaskRun ({finished} finished), {attempt_rows}/{attempts} TaskAttempt"
    )
    return task_rows + attempt_rows, check


def _delete_rows(prefix: str) -> None:
    from dashboard.models import TaskAttempt, TaskRun

    for model in (TaskRun, TaskAttempt):
        model.objects.filter(task_id__startswith=prefix).delete()

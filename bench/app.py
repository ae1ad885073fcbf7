"""The Celery app of the benchmarks: ``celery -A bench.app worker``, ``python -m bench.publisher``.

One task, ``bench.noop(order_id)``, that INCRs a Redis counter (so the driver can watch the
consume rate without a result backend): a no-op, or with ``BENCH_SLEEP_MS`` set, a stand-in for an
I/O-bound task that first sleeps that long (``time.sleep``: waiting, no CPU, the GIL released, like
a call to another service). The variant is chosen by environment variables, set by the
driver (``bench.worker_overhead``, ``bench.publish_cost``):

``BENCH_VARIANT``
    ``plain``      Celery alone: no Django, no result backend.
    ``recorder``   the same plus ``tasktrail.recorder.install(app, stream=BENCH_STREAM)``.
    ``recorder-alone`` the same app as ``recorder`` (the driver runs no monitor beside it).
    ``recorder-tracing`` ``recorder`` plus OpenTelemetry tracing as tasktrail sets it up
                   (``tasktrail.tracing.setup``: pool processes after the fork; exporting
                   OTLP/HTTP to the driver's ``bench.otlp_sink``, from ``OTEL_*`` variables the
                   driver sets).
    ``recorder-tracing-10pct`` the same app; the driver sets a parent-based 10% sampler (an
                   extra row beside the always-on one, not a substitute for it).
    ``djdb``       django-celery-results (``result_backend="django-db"``), Django configured from
                   ``dashboard.settings``, Celery's default of closing the database connection after
                   every task (``CELERY_DB_REUSE_MAX`` not set).
    ``flower``     plain Celery with task events on (the driver starts the worker with ``-E`` and
                   Flower consuming them); the event exchange is ``BENCH_EVENT_EXCHANGE``.
    ``djdb-reuse`` the same with ``CELERY_DB_REUSE_MAX`` (``BENCH_DB_REUSE_MAX``, default 1000),
                   ``task_track_started`` and ``result_extended``: what a dashboard would need.
``BENCH_QUEUE``    the queue the task is published to and the worker consumes (default ``bench``).
``BENCH_COUNTER``  the Redis key the task increments (default ``bench:counter``).
``BENCH_STREAM``   the recorder's stream (default ``bench:events``): never the production stream.
``REDIS_URL``      broker, counter and stream (required: the driver passes its own).
``BENCH_SLEEP_MS`` milliseconds the task sleeps before its INCR (default 0: a no-op).
``BENCH_EVENT_EXCHANGE`` Celery's event exchange (default ``celeryev``); the driver names it after
                   the run, so its bindings are the run's own and deleted with it.
``BENCH_CONTROL_EXCHANGE`` Celery's control exchange (default ``celery``), also named after the run.
``BENCH_REMOTE_CONTROL`` ``1``: keep Celery's remote control (pidbox) on; off by default.
"""

from __future__ import annotations

import os
import sys
import time
import types
from typing import Final

import redis
from celery import Celery

VARIANTS: Final = (
    "plain", "recorder", "recorder-alone", "recorder-tracing", "recorder-tracing-10pct", "djdb",
    "djdb-reuse", "flower",
)  # fmt: skip
TRACED: Final = ("recorder-tracing", "recorder-tracing-10pct")

VARIANT: Final = os.environ.get("BENCH_VARIANT", "plain")
if VARIANT not in VARIANTS:
    raise RuntimeError(f"BENCH_VARIANT must be one of {', '.join(VARIANTS)}, not {VARIANT!r}")
QUEUE: Final = os.environ.get("BENCH_QUEUE", "bench")
COUNTER: Final = os.environ.get("BENCH_COUNTER", "bench:counter")
STREAM: Final = os.environ.get("BENCH_STREAM", "bench:events")
SLEEP: Final = float(os.environ.get("BENCH_SLEEP_MS") or 0) / 1000
REDIS_URL: Final = os.environ.get("REDIS_URL", "")
if not REDIS_URL:
    raise RuntimeError("bench.app needs REDIS_URL (python -m bench sets it for its subprocesses)")

USES_DJANGO: Final = VARIANT in ("djdb", "djdb-reuse")
if USES_DJANGO:
    # Celery installs its Django fix-up when the app is created with this variable set.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    # ``DashboardConfig.ready()`` imports ``workers.celery_app``, which creates the project's Celery
    # app and installs the tasktrail recorder (on the default stream) in every Django process. These
    # variants are the baseline without tasktrail: a placeholder module makes that import a no-op.
    sys.modules.setdefault("workers.celery_app", types.ModuleType("workers.celery_app"))

# fixups=[]: the plain variants must not pick up the Django fix-up from an inherited
# DJANGO_SETTINGS_MODULE.
app = Celery("bench", broker=REDIS_URL, fixups=None if USES_DJANGO else [])
app.conf.update(
    task_default_queue=QUEUE,
    broker_connection_retry_on_startup=True,
    # No pidbox by default: nothing shared on the broker (keys other workers use) is created or
    # left behind. BENCH_REMOTE_CONTROL=1 turns it on (Celery's default) for comparison.
    worker_enable_remote_control=os.environ.get("BENCH_REMOTE_CONTROL") == "1",
    event_exchange=os.environ.get("BENCH_EVENT_EXCHANGE") or "celeryev",
    # Flower's inspect calls use the control exchange and its reply exchange: named after the run.
    control_exchange=os.environ.get("BENCH_CONTROL_EXCHANGE") or "celery",
)

if USES_DJANGO:
    app.conf.result_backend = "django-db"
    if VARIANT == "djdb-reuse":
        app.conf.update(task_track_started=True, result_extended=True)
        # Celery's Django fix-up reads this un-namespaced name from the app's config.
        app.conf.CELERY_DB_REUSE_MAX = int(os.environ.get("BENCH_DB_REUSE_MAX", "1000"))
elif VARIANT in ("recorder", "recorder-alone", *TRACED):
    from tasktrail import recorder

    recorder.install(app, recorder_url=REDIS_URL, stream=STREAM)
    if VARIANT in TRACED:
        from tasktrail.tracing.setup import install_worker_hooks

        install_worker_hooks()  # the publisher sets up itself (bench.publisher)

_counter_client = redis.Redis.from_url(REDIS_URL)  # its pool reconnects after a fork


@app.task(name="bench.noop")
def noop(order_id: int) -> None:
    if SLEEP:
        time.sleep(SLEEP)
    _counter_client.incr(COUNTER)

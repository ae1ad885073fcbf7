"""Dashboard pages at 1,000,000 task rows, beside django-celery-results' admin on the same rows.

    python -m bench.pages [--rows 1000000] [--repeat 7] [--regenerate] [--json PATH]

Needs PostgreSQL (``BENCH_PAGES_DATABASE_URL``, default the local server, database
``tasktrail_pages``, created and migrated if missing). Rows are generated in SQL with
``generate_series`` (a realistic mix: 20 task names, 3 queues, mostly successes, 30 days), once;
later runs reuse them unless the count differs (``python -m bench --only pages`` runs this module
as a child and reads ``--json``). Each page is requested through Django's test client
as a logged-in superuser: server time only, median of ``--repeat`` after one warm-up request.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/tasktrail_pages"
RESULTS = Path(__file__).resolve().parent / "results"
GOAL_MS = 50.0

NAMES = [f"shop.{verb}_{noun}" for verb in ("send", "sync", "charge", "build", "notify")
         for noun in ("invoice", "inventory", "card", "report")]  # fmt: skip
QUEUES = ["default", "inventory", "payments"]


def _setup(database_url: str) -> None:
    import psycopg

    name = database_url.rsplit("/", 1)[1]
    admin_url = database_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    os.environ["DATABASE_URL"] = database_url
    os.environ["ALLOWED_HOSTS"] = "testserver"  # the test client's host
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    os.environ.setdefault("TASKTRAIL_EMBEDDED_REDIS", "1")  # used only without REDIS_URL
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _generate(rows: int) -> None:
    """Fill TaskRun, TaskAttempt and django-celery-results' TaskResult with ``rows`` tasks."""
    from django.db import connection

    names = "ARRAY[" + ",".join(f"'{n}'" for n in NAMES) + "]"
    queues = "ARRAY[" + ",".join(f"'{q}'" for q in QUEUES) + "]"
    # state by a hash of i: 85% success, 8% failure, then retry/pending/started/revoked
    state = """CASE WHEN i % 100 < 85 THEN 'SUCCESS' WHEN i % 100 < 93 THEN 'FAILURE'
        WHEN i % 100 < 95 THEN 'RETRY' WHEN i % 100 < 97 THEN 'PENDING'
        WHEN i % 100 < 98 THEN 'STARTED' ELSE 'REVOKED' END"""
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE dashboard_taskrun, dashboard_taskattempt, django_celery_results_taskresult"
        )
        t0 = time.time()
        cursor.execute(f"""
            INSERT INTO dashboard_taskrun (task_id, name, queue, input_id, state, retries,
                exc_type, exc_message, first_seen_at, published_at, started_at, finished_at,
                updated_at, worker, runtime, queue_wait, args, kwargs, arg_names, trace_id,
                state_key, worker_key, start_key, error_key)
            SELECT
                'task-' || i, ({names})[1 + i % 20], ({queues})[1 + (i / 7) % 3],
                CASE i % 3 WHEN 0 THEN 'ORD-' WHEN 1 THEN 'SKU-' ELSE 'PAY-' END || (i / 3),
                {state}, (i % 100 BETWEEN 85 AND 95)::int,
                CASE WHEN i % 100 BETWEEN 85 AND 92 THEN 'ValueError' END,
                CASE WHEN i % 100 BETWEEN 85 AND 92 THEN 'failed on item ' || i END,
                now() - make_interval(secs => ({rows} - i) * 2.6),
                now() - make_interval(secs => ({rows} - i) * 2.6),
                now() - make_interval(secs => ({rows} - i) * 2.6 - 0.2),
                CASE WHEN i % 100 < 93 OR i % 100 >= 98 THEN
                    now() - make_interval(secs => ({rows} - i) * 2.6 - 0.5) END,
                now() - make_interval(secs => ({rows} - i) * 2.6 - 0.5),
                'celery@worker-' || (i % 8), 0.3 + (i % 17) / 10.0, 0.2,
                '[' || (i / 3) || ']', '{{}}', 'id', md5(i::text),
                0, 0, 0, -1
            FROM generate_series(1, {rows}) AS i
        """)
        cursor.execute(f"""
            INSERT INTO dashboard_taskattempt (task_id, attempt, outcome, worker, started_at,
                finished_at, runtime, queue_wait, worker_key, outcome_rank)
            SELECT 'task-' || i, 0, {state}, 'celery@worker-' || (i % 8),
                now() - make_interval(secs => ({rows} - i) * 2.6),
                now() - make_interval(secs => ({rows} - i) * 2.6 - 0.5), 0.5, 0.2, 0, 0
            FROM generate_series(1, {rows}) AS i
        """)
        cursor.execute(f"""
            INSERT INTO django_celery_results_taskresult (task_id, status, content_type,
                content_encoding, result, date_done, traceback, meta, task_args, task_kwargs,
                task_name, worker, date_created, periodic_task_name, date_started)
            SELECT 'task-' || i, {state}, 'application/json', 'utf-8', 'null',
                now() - make_interval(secs => ({rows} - i) * 2.6 - 0.5), NULL, '{{}}',
                '"(' || (i / 3) || ',)"', '"{{}}"', ({names})[1 + i % 20],
                'celery@worker-' || (i % 8),
                now() - make_interval(secs => ({rows} - i) * 2.6), NULL, NULL
            FROM generate_series(1, {rows}) AS i
        """)
        cursor.execute("ANALYZE dashboard_taskrun")
        cursor.execute("ANALYZE dashboard_taskattempt")
        cursor.execute("ANALYZE django_celery_results_taskresult")
        print(f"generated {rows} tasks in {time.time() - t0:.0f}s", file=sys.stderr)


def _row_count() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM dashboard_taskrun")
        (count,) = cursor.fetchone()
    return int(count)


def _time(label: str, fetch: Callable[[], int], repeat: int) -> float:
    status = fetch()  # warm-up, and the page must answer
    if status != 200:
        raise RuntimeError(f"{label}: the page answered {status}")
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fetch()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def write_overview_figures() -> float:
    """Count the overview's figures as a monitor's alert check does and store them where the page
    reads them (without them the page shows "Not measured yet"); the counting's time in ms (the
    monitor's cost, once per check)."""
    import redis
    from django.conf import settings
    from django.utils import timezone

    from dashboard import redis_keys
    from dashboard.alerts import task_figures

    counted = time.perf_counter()
    figures = task_figures.overview_figures(timezone.now())
    check_ms = (time.perf_counter() - counted) * 1000
    with redis.Redis.from_url(settings.REDIS_URL) as client:
        client.set(
            redis_keys.overview_figures(settings.TASKTRAIL_STREAM),
            json.dumps({**figures, "every": settings.TASKTRAIL_ALERT_CHECK_SECONDS}, default=str),
        )
    return check_ms


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--regenerate", action="store_true")
    parser.add_argument("--json", type=Path, help="Also write the timings here, as JSON.")
    args = parser.parse_args(argv)
    url = os.environ.get("BENCH_PAGES_DATABASE_URL", DEFAULT_URL)
    _setup(url)
    generated_seconds = None
    if args.regenerate or _row_count() != args.rows:
        started = time.perf_counter()
        _generate(args.rows)
        generated_seconds = time.perf_counter() - started

    from django.conf import settings
    from django.contrib.auth.models import User
    from django.test import Client

    from dashboard.models import TaskRun
    from dashboard.pagination import Cursor

    user, _ = User.objects.get_or_create(username="bench", defaults={"is_superuser": True})
    user.is_superuser = user.is_staff = True
    user.save()
    client = Client()
    client.force_login(user)
    deep_row = min(250_000, args.rows // 4)
    deep = TaskRun.objects.order_by("-first_seen_at", "-id").values("first_seen_at", "id")[deep_row]
    deep_cursor = Cursor(deep["first_seen_at"], deep["id"]).encode()
    sample = TaskRun.objects.get(task_id=f"task-{args.rows // 2}")
    from django_celery_results.models import TaskResult

    their_sample = TaskResult.objects.get(task_id=sample.task_id)

    def get(path: str, **params: str) -> Callable[[], int]:
        return lambda: client.get(path, params).status_code

    def found(q: str) -> Callable[[], int]:
        """A search with one match answers with a redirect to that task: its success."""

        def fetch() -> int:
            status = client.get("/tasks/", {"q": q}).status_code
            return 200 if status == 302 else status

        return fetch

    overview_check_ms = write_overview_figures()

    ours = [
        ("tasks page", get("/tasks/")),
        ("state filter (FAILURE)", get("/tasks/", state="FAILURE")),
        ("task-name filter", get("/tasks/", name=NAMES[3])),
        ("search by input id", found(sample.input_id or "")),
        ("search by task id", found(sample.task_id)),
        ("next page deep in the list", get("/tasks/", cursor=deep_cursor)),
        ("task detail", get(f"/tasks/{sample.task_id}/")),
        ("overview", get("/")),
        ("API: GET /api/tasks?state=FAILURE", get("/api/tasks", state="FAILURE")),
    ]
    admin = "/admin/django_celery_results/taskresult/"
    theirs = [
        ("tasks page", get(admin)),
        ("state filter (FAILURE)", get(admin, status__exact="FAILURE")),
        ("task-name filter", get(admin, q=NAMES[3])),
        ("search by input id", get(admin, q=str(args.rows // 6))),
        ("search by task id", get(admin, q=sample.task_id)),
        ("next page deep in the list", get(admin, p=str(deep_row // 100))),
        ("task detail", get(f"{admin}{their_sample.pk}/change/")),
    ]
    lines = [
        f"## Dashboard at {args.rows:,} rows (PostgreSQL)",
        "",
        f"Server time through Django's test client, median of {args.repeat}; "
        f"`python -m bench.pages --rows {args.rows}`. "
        f"Goal: every tasktrail page ≤ {GOAL_MS:.0f} ms.",
        "",
        "| page | tasktrail ms | django-celery-results admin ms | goal |",
        "|---|---|---|---|",
    ]
    their_ms = {label: _time(label, fetch, args.repeat) for label, fetch in theirs}
    timings = []
    for label, fetch in ours:
        ms = _time(label, fetch, args.repeat)
        other = their_ms.get(label)
        timings.append({"page": label, "tasktrail_ms": ms, "admin_ms": other})
        verdict = "met" if ms <= GOAL_MS else "**not met**"
        lines.append(
            f"| {label} | {ms:.1f} | {'' if other is None else f'{other:.0f}'} | {verdict} |"
        )
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "rows": args.rows,
                    "repeat": args.repeat,
                    "generated_seconds": generated_seconds,
                    "pages": timings,
                    "overview_check_ms": overview_check_ms,
                }
            )
        )
    lines += [
        "",
        f"The overview reads the figures the monitor counts at each alert check; counting them "
        f"took {overview_check_ms:.0f} ms here, once per check (every "
        f"{settings.TASKTRAIL_ALERT_CHECK_SECONDS:g} s), whatever the number of viewers.",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pages.md").write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m bench``: run the benchmarks, print the report, write ``bench/results/latest.md``.

Progress goes to stderr, the report to stdout. Every child process is stopped and every key the run
created is deleted on the way out, also after a failure, Ctrl-C or SIGTERM. A section that fails is
reported as failed and the next one still runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, Final

RESULTS_DIR: Final = Path(__file__).resolve().parent / "results"
SECTIONS: Final = (
    "worker", "scaling", "ingest", "pages", "publish", "retention", "heartbeat", "hostile",
)  # fmt: skip
QUICK: Final = {
    "tasks": 600, "io_tasks": 400, "rounds": 1, "io_rounds": 1, "sizes": "1000,5000",
    "events": 40_000,
    "page_rows": 1_000_000, "page_repeat": 3, "publish_calls": 300, "retention_rows": 50_000,
}  # fmt: skip
DEFAULTS: Final = {
    "tasks": 2_000, "io_tasks": 600, "rounds": 3, "io_rounds": 2, "sizes": "1000,10000,100000",
    "events": 150_000, "page_rows": 1_000_000, "page_repeat": 3, "publish_calls": 2_000,
    "retention_rows": 1_000_000,
}  # fmt: skip


def parse_args(argv: list[str]) -> argparse.Namespace:
    from bench.worker_overhead import VARIANTS

    names = (*SECTIONS, *VARIANTS)
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="tasktrail benchmarks: worker overhead, scaling, monitor ingest, dashboard "
        "pages at 1M rows, publish cost, retention (pruning 1M expired tasks beside 1M kept), "
        "worker heartbeats' CPU cost.",
    )
    parser.add_argument("--tasks", type=int, help="N no-op tasks per worker measurement (2000).")
    parser.add_argument("--io-tasks", type=int, help="N 10 ms tasks per worker measurement (600).")
    parser.add_argument(
        "--kinds", default="noop,io10", help="Task kinds for section 1 (default noop,io10)."
    )
    parser.add_argument("--rounds", type=int, help="Rounds per section (default 3).")
    parser.add_argument(
        "--io-rounds",
        type=int,
        help="Rounds of the 10 ms tasks in section 1 (default 2: their ratios vary less).",
    )
    parser.add_argument("--sizes", help="Scaling sizes, comma-separated (1000,10000,100000).")
    parser.add_argument("--events", type=int, help="E events per ingest measurement (150,000).")
    parser.add_argument("--page-rows", type=int, help="Rows for the pages (1,000,000).")
    parser.add_argument("--page-repeat", type=int, help="Timed requests per page (3).")
    parser.add_argument(
        "--publish-calls", type=int, help="Timed apply_async calls per process (default 2000)."
    )
    parser.add_argument(
        "--retention-rows",
        type=int,
        help="Expired tasks, and as many kept ones, for the retention section (1,000,000).",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="Smoke run: " + ", ".join(f"{k.replace('_', '-')} {v}" for k, v in QUICK.items()),
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help=f"Run only these (repeat or comma-separate): {', '.join(names)}. 'worker' runs "
        "section 1's default variants (all but the diagnostic recorder-alone); a variant name "
        "runs that variant and plain Celery, the reference.",
    )
    options = parser.parse_args(argv)
    fallback = QUICK if options.quick else DEFAULTS
    for name, value in fallback.items():
        if getattr(options, name) is None:
            setattr(options, name, value)
    only = {name.strip() for item in options.only for name in item.split(",") if name.strip()}
    unknown = only - set(names)
    if unknown:
        parser.error(
            f"--only: unknown {', '.join(sorted(unknown))} (choose from {', '.join(names)})"
        )
    options.only = only
    if min(options.tasks, options.io_tasks) <= 200:
        parser.error("--tasks and --io-tasks must be more than 200 (the first 200 are a warm-up)")
    numbers = (options.rounds, options.io_rounds, options.events, options.publish_calls)
    if min(*numbers, options.page_repeat) < 1 or options.retention_rows < 10:
        parser.error(
            "--rounds, --io-rounds, --events, --page-repeat, --publish-calls: positive; "
            "--retention-rows: at least 10"
        )
    try:
        options.sizes = [int(size) for size in str(options.sizes).split(",") if size.strip()]
    except ValueError:
        parser.error("--sizes: comma-separated numbers of tasks")
    options.kinds = [kind.strip() for kind in options.kinds.split(",") if kind.strip()]
    if not options.kinds or set(options.kinds) - {"noop", "io10"}:
        parser.error("--kinds: noop, io10 or both")
    return options


def selected(only: set[str]) -> tuple[list[str], set[str]]:
    """Worker variants to run, and the other sections to run."""
    from bench.worker_overhead import DEFAULT_VARIANTS, VARIANTS

    if not only:
        return list(DEFAULT_VARIANTS), set(SECTIONS)
    variants = [v for v in VARIANTS if ("worker" in only and v in DEFAULT_VARIANTS) or v in only]
    if variants and "plain" not in variants:
        variants.insert(0, "plain")
    return variants, only & set(SECTIONS)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str]) -> int:
    options = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    variants, sections = selected(options.only)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    os.environ.setdefault("TASKTRAIL_EMBEDDED_REDIS", "1")  # used only without REDIS_URL
    import django

    django.setup()  # starts the embedded Valkey when REDIS_URL is not set
    from django.conf import settings
    from django.core.management import call_command

    from bench import (
        database,
        ingest,
        machine,
        pages_section,
        publish_cost,
        retention,
        scaling,
        worker_overhead,
    )
    from bench.context import Bench
    from bench.report import Header, Report

    log("database: applying migrations if any are missing")
    call_command("migrate", interactive=False, verbosity=0)

    log_dir = RESULTS_DIR / "logs"
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)
    bench = Bench(settings.REDIS_URL, settings.DATABASE_URL, log_dir)
    started = time.monotonic()
    header = Header(
        when=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        command=shlex.join(["python", "-m", "bench", *argv]),
        cpu=machine.cpu(),
        system=machine.system(),
        python=machine.python(),
        code=machine.code_version(RESULTS_DIR.parent.parent),
        database=machine.database(),
        database_url=machine.safe_url(settings.DATABASE_URL),
        redis=machine.redis_server(bench.client),
        redis_url=machine.safe_url(settings.REDIS_URL),
        packages=machine.packages(),
        load_start=machine.load(),
    )
    counts = {"noop": options.tasks, "io10": options.io_tasks}
    kinds = {kind: counts[kind] for kind in options.kinds}
    kind_rounds = {"noop": options.rounds, "io10": options.io_rounds}
    report = Report(header, tasks=kinds, rounds=options.rounds, kind_rounds=kind_rounds)
    log(f"run {bench.run_id}: {header.database}, {header.redis}; child logs in {log_dir}")
    retention_result: dict[str, Any] = {}
    heartbeat_lines: list[str] = []
    hostile_lines: list[str] = []

    def section(name: str, body: Callable[[], object]) -> None:
        try:
            database.vacuum()  # the dead rows of earlier sections and runs
            body()
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            log(f"{name} failed:\n{traceback.format_exc()}")
            report.failures.append(f"{name}: {str(exc).splitlines()[0] if str(exc) else repr(exc)}")

    try:
        if variants:
            section(
                "worker overhead",
                lambda: report.workers.extend(
                    worker_overhead.run(bench, variants, tasks=kinds, rounds=kind_rounds, log=log)
                ),
            )
        if "scaling" in sections:
            section(
                "scaling", lambda: report.scaling.extend(scaling.run(bench, options.sizes, log))
            )
        if "ingest" in sections:
            section(
                "monitor ingest",
                lambda: report.ingests.extend(
                    ingest.run(bench, events=options.events, rounds=options.rounds, log=log)
                ),
            )
        if "pages" in sections:

            def pages() -> None:
                log(f"dashboard pages at {options.page_rows:,} rows")
                report.pages = pages_section.run(
                    bench, rows=options.page_rows, repeat=options.page_repeat
                )

            section("pages", pages)
        if "publish" in sections:
            section(
                "publish cost",
                lambda: report.publishes.extend(
                    publish_cost.run(
                        bench,
                        calls=options.publish_calls,
                        warmup=max(50, options.publish_calls // 10),
                        rounds=options.rounds,
                        log=log,
                    )
                ),
            )
        if "retention" in sections:

            def prune() -> None:
                url = retention.database_url(bench.database_url)
                if url is None:
                    retention_result["markdown"] = [
                        "## 6. Retention",
                        "",
                        "**skipped: needs PostgreSQL** (run with a PostgreSQL `DATABASE_URL`).",
                    ]
                    return
                rows = str(options.retention_rows)
                log(f"retention: pruning {rows} expired tasks beside {rows} kept")
                with tempfile.TemporaryDirectory() as tmp:
                    out = Path(tmp) / "retention.json"
                    bench.procs.run_python(
                        "retention",
                        ["-m", "bench.retention", "--expired", rows, "--kept", rows,
                         *(["--quick"] if options.quick else []),
                         "--json", str(out), "--log-dir", str(log_dir / "retention")],
                        bench.child_env(BENCH_RETENTION_DATABASE_URL=url),
                        timeout=3600,
                    )  # fmt: skip
                    retention_result.update(json.loads(out.read_text()))

            section("retention", prune)
        if "heartbeat" in sections:
            from bench import heartbeat

            section(
                "heartbeat",
                lambda: heartbeat_lines.extend(heartbeat.run(bench, options.quick, log)),
            )
        if "hostile" in sections:
            from bench import hostile_entry

            section("hostile entry", lambda: hostile_lines.extend(hostile_entry.run(bench, log)))
    except KeyboardInterrupt:
        log("interrupted: stopping child processes and deleting the run's keys")
        return 130
    finally:
        bench.close()

    header.load_end = machine.load()
    header.minutes = (time.monotonic() - started) / 60
    text = report.markdown()
    if retention_result:
        text = retention.splice(
            text, retention_result.get("goals", []), retention_result["markdown"]
        )
    if heartbeat_lines:
        text = text.rstrip("\n") + "\n\n" + "\n".join(heartbeat_lines)
    if hostile_lines:
        text = text.rstrip("\n") + "\n\n" + "\n".join(hostile_lines)
    print(text)
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "latest.md").write_text(text)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    (RESULTS_DIR / f"{stamp}.md").write_text(text)
    log(f"written to {RESULTS_DIR / 'latest.md'}")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

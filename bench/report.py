"""The markdown report: a header stating where and how it was measured, then a table per section."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import median
from typing import Final

from bench import ingest, pages_section, publish_cost, scaling, worker_overhead

# Goals of the issue: tracing on, ratio to plain Celery per task kind.
TRACING_GOALS: Final = {"noop": 0.90, "io10": 0.99}
INGEST_GOAL: Final = 10_000  # events/s, one monitor into PostgreSQL
LINEAR_GOAL: Final = 1.25  # drain time per 1k at the largest size <= this x the smallest's
LAG_GOAL_SECONDS: Final = 5.0  # oldest unwritten event never older than this during a drain
FLAT_GOAL: Final = 1.25  # peak RSS at the largest history <= this x the smallest's
KIND_LABELS: Final = {
    "noop": "no-op tasks (one Redis INCR)",
    "io10": "10 ms I/O tasks (`time.sleep(0.01)`, then the INCR)",
}


@dataclass
class Header:
    when: str
    command: str
    cpu: str
    system: str
    python: str
    code: str
    database: str
    database_url: str
    redis: str
    redis_url: str
    packages: str
    load_start: str
    load_end: str = ""
    minutes: float = 0.0


@dataclass
class Report:
    header: Header
    tasks: dict[str, int] = field(default_factory=dict)  # N per task kind
    rounds: int = 0
    kind_rounds: dict[str, int] = field(default_factory=dict)  # section 1: rounds per task kind
    workers: list[worker_overhead.Measurement] = field(default_factory=list)
    scaling: list[scaling.Point] = field(default_factory=list)
    ingests: list[ingest.Measurement] = field(default_factory=list)
    pages: pages_section.Result | None = None
    publishes: list[publish_cost.Measurement] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        h = self.header
        lines = [
            "# tasktrail benchmarks",
            "",
            f"- Command: `{h.command}` ({h.when}, **{h.minutes:.1f} min** in all)",
            f"- Code: {h.code}",
            f"- Machine: {h.cpu}; {h.system}; {h.python}",
            f"- Database: {h.database} (`{h.database_url}`)",
            f"- Broker and stream: {h.redis} (`{h.redis_url}`)",
            f"- Packages: {h.packages}",
            f"- Load average (1/5/15 min): {h.load_start} at start, {h.load_end} at end "
            "(the machine may be shared: compare variants of one run, not runs)",
        ]
        goals = self.goals()
        if goals:
            lines += ["", "## Goals", "", *_table(["goal", "measured", "verdict"], goals)]
        for part in (self._workers, self._scaling, self._ingests, self._pages, self._publishes):
            body = part()
            if body:
                lines += ["", *body]
        if self.failures:
            lines += ["", "## Failed", "", *(f"- {failure}" for failure in self.failures)]
        return "\n".join(lines) + "\n"

    # -- goals -------------------------------------------------------------------------------------

    def goals(self) -> list[list[str]]:
        rows = []
        for kind, goal in TRACING_GOALS.items():
            ratio = self._ratio("recorder-tracing", kind)
            if ratio is not None:
                rows.append(
                    [f"tasktrail with tracing ≥ {goal:.2f}x plain, {kind}", f"{ratio:.3f}x",
                     _verdict(ratio >= goal)]
                )  # fmt: skip
        if self.scaling:
            rows += self._scaling_goals()
        ones = [m.events_per_second for m in self.ingests if m.processes == 1]
        if ones:
            rate = median(ones)
            postgres = self.header.database.startswith("PostgreSQL")
            rows.append(
                [f"ingest ≥ {INGEST_GOAL:,} events/s, one monitor"
                 + ("" if postgres else " (goal is for PostgreSQL)"),
                 f"{rate:,.0f}/s", _verdict(rate >= INGEST_GOAL)]
            )  # fmt: skip
        if self.pages is not None and self.pages.pages:
            worst = max(self.pages.pages, key=lambda p: p.tasktrail_ms)
            rows.append(
                [f"every page ≤ {pages_section.GOAL_MS:.0f} ms at {self.pages.rows:,} rows",
                 f"slowest: {worst.page} {worst.tasktrail_ms:.1f} ms",
                 _verdict(worst.tasktrail_ms <= pages_section.GOAL_MS)]
            )  # fmt: skip
        return rows

    def _scaling_goals(self) -> list[list[str]]:
        ours = sorted((p for p in self.scaling if p.system == "tasktrail"), key=lambda p: p.size)
        if len(ours) < 2:
            return []
        small, large = ours[0], ours[-1]
        growth = large.seconds_per_1k / small.seconds_per_1k
        lag = max(p.lag_seconds or 0.0 for p in ours)
        rows = [
            [f"drain time linear: s per 1k at {large.size:,} ≤ {LINEAR_GOAL}x at {small.size:,}",
             f"{growth:.2f}x", _verdict(growth <= LINEAR_GOAL)],
            [f"monitor lag bounded: oldest unwritten event ≤ {LAG_GOAL_SECONDS:.0f} s",
             f"max {lag:.2f} s", _verdict(lag <= LAG_GOAL_SECONDS)],
        ]  # fmt: skip
        for process in ("monitor", "web"):
            if process in small.rss_mb and process in large.rss_mb:
                ratio = large.rss_mb[process] / small.rss_mb[process]
                rows.append(
                    [f"{process} peak RSS flat: at {large.history:,} tasks ≤ {FLAT_GOAL}x at "
                     f"{small.history:,}",
                     f"{small.rss_mb[process]:.0f} → {large.rss_mb[process]:.0f} MB "
                     f"({ratio:.2f}x)", _verdict(ratio <= FLAT_GOAL)]
                )  # fmt: skip
        return rows

    # -- 1. worker overhead ------------------------------------------------------------------------

    def _rate(self, variant: str, kind: str) -> float | None:
        found = [
            m.tasks_per_second for m in self.workers if m.variant == variant and m.kind == kind
        ]
        return median(found) if found else None

    def _ratio(self, variant: str, kind: str) -> float | None:
        rate, plain = self._rate(variant, kind), self._rate("plain", kind)
        return rate / plain if rate is not None and plain else None

    def _workers(self) -> list[str]:
        if not self.workers:
            return []
        lines = [
            "## 1. Worker overhead",
            "",
            "N tasks pre-published to a fresh queue per measurement, then `celery -A bench.app "
            "worker " + " ".join(worker_overhead.WORKER_ARGS) + "` drains them; rate from the "
            f"{worker_overhead.WARMUP_TASKS}th to the N-th completion. Task kinds and variants "
            "alternated (order reversed every other round); median and "
            "per-round figures. All variants: Celery's remote control (pidbox) off, default log "
            "level; (d) sets `CELERY_DB_REUSE_MAX` = 1000. (b) and (b+t) run "
            "`manage.py monitor --no-alerts` beside the worker, writing rows (its CPU counts); "
            "(b+t) exports every span (parent-based always-on) over OTLP/HTTP to a loopback sink "
            "(`bench/otlp_sink.py`) on the same two cores.",
        ]
        for kind in worker_overhead.KINDS:
            found = [m for m in self.workers if m.kind == kind]
            if found:
                rounds = self.kind_rounds.get(kind, self.rounds)
                lines += [
                    "",
                    f"### {KIND_LABELS[kind]}, N = {self.tasks.get(kind, 0):,}, {rounds} round(s)",
                    "",
                ]
                lines += self._worker_table(kind, found)
        lines += [
            "",
            "CPU ms/task: user + system CPU time used in the timed window by the worker (main "
            "process and pool), by the monitor and by the OTLP sink, per task completed, median "
            "over rounds (from /proc; less sensitive than tasks/s to other load). Not counted: "
            "Redis, PostgreSQL, Flower.",
        ]
        checks = []
        for m in self.workers:
            checks.append(f"{m.variant}/{m.kind} r{m.round}: {m.check}")
        lines += ["", "<details><summary>Rows found afterwards</summary>", ""]
        lines += [f"- {c}" for c in checks] + ["", "</details>"]
        return lines

    def _worker_table(self, kind: str, found: list[worker_overhead.Measurement]) -> list[str]:
        rows = []
        for variant, label in worker_overhead.VARIANTS.items():
            ms = [m for m in found if m.variant == variant]
            if not ms:
                continue
            rate = median(m.tasks_per_second for m in ms)
            ratio = self._ratio(variant, kind)
            goal = ""
            if variant == "recorder-tracing" and ratio is not None:
                target = TRACING_GOALS[kind]
                goal = f"≥ {target:.2f}x: {_verdict(ratio >= target)}"
            rss = [m.flower_rss_mb for m in ms if m.flower_rss_mb is not None]
            rows.append(
                [
                    label,
                    f"{rate:.0f}",
                    " / ".join(f"{m.tasks_per_second:.0f}" for m in ms),
                    f"{ratio:.2f}x" if ratio is not None else "-",
                    goal,
                    _median_ms([m.worker_cpu_ms for m in ms]),
                    _median_ms([m.monitor_cpu_ms for m in ms]),
                    _median_ms([m.sink_cpu_ms for m in ms], digits=3),
                    f"Flower {median(rss):.0f} MB" if rss else "",
                ]
            )
        return _table(
            ["variant", "tasks/s", "per round", "ratio to plain", "goal", "worker CPU ms/task",
             "monitor CPU ms/task", "OTLP sink CPU ms/task", "RSS"],
            rows,
        )  # fmt: skip

    # -- 2. scaling --------------------------------------------------------------------------------

    def _scaling(self) -> list[str]:
        if not self.scaling:
            return []
        rows = []
        for p in self.scaling:
            rows.append(
                [
                    p.system,
                    f"{p.size:,}",
                    f"{p.history:,}",
                    f"{p.drain_seconds:.1f}",
                    f"{p.seconds_per_1k:.2f}",
                    "-" if p.lag_entries is None else f"{p.lag_entries:.0f}",
                    "-" if p.lag_seconds is None else f"{p.lag_seconds:.2f}",
                    f"{p.caught_up_seconds:.2f}",
                    ", ".join(f"{k} {v:.0f}" for k, v in p.rss_mb.items()),
                    ", ".join(f"{k} {v:.0f}" for k, v in p.pages_ms.items()),
                ]
            )
        return [
            "## 2. Scaling with history",
            "",
            "Per size, no-op tasks pre-published then drained by a fresh worker (`-c 2`); the "
            "history accumulates (rows are kept; Flower keeps what it saw, up to its `max_tasks` "
            "of 100,000). tasktrail: recorder, one `manage.py monitor` and one web process "
            "(`bench/wsgi_server.py`: the dashboard's WSGI application in a threading wsgiref "
            "server) for the whole section; Flower: worker with `-E`, one Flower process. Lag and "
            f"RSS sampled every {scaling.SAMPLE_SECONDS} s over the drain and the page fetches "
            "after it (pages: median of 3 GETs after one untimed, ms, over HTTP, logged in). "
            "Caught up: seconds after the last task until the monitor had written every event "
            "(tasktrail) or Flower's API showed the last tasks finished.",
            "",
            *_table(
                ["system", "tasks", "history", "drain s", "s per 1k", "max lag entries",
                 "max lag s", "caught up s", "peak RSS MB", "pages ms"],
                rows,
            ),
        ]  # fmt: skip

    # -- 3. ingest ---------------------------------------------------------------------------------

    def _ingests(self) -> list[str]:
        if not self.ingests:
            return []
        rows = []
        one = [m.events_per_second for m in self.ingests if m.processes == 1]
        one_rate = median(one) if one else None
        for count in ingest.PROCESSES:
            ms = [m for m in self.ingests if m.processes == count]
            if not ms:
                continue
            rate = median(m.events_per_second for m in ms)
            goal = ""
            if count == 1:
                goal = f"≥ {INGEST_GOAL:,}/s: {_verdict(rate >= INGEST_GOAL)}"
            rows.append(
                [
                    f"{count} monitor process{'es' if count > 1 else ''}",
                    f"{rate:,.0f}",
                    " / ".join(f"{m.events_per_second:,.0f}" for m in ms),
                    f"{rate / one_rate:.2f}x" if one_rate else "-",
                    f"{median(m.rows_per_second for m in ms):,.0f}",
                    goal,
                ]
            )
        first = self.ingests[0]
        return [
            "## 3. Monitor ingest",
            "",
            f"About {first.entries * ingest.EVENTS_PER_ENTRY:,} events of {first.tasks:,} tasks "
            f"per measurement, {ingest.EVENTS_PER_ENTRY} events "
            "per stream entry (4 events per task; 1 in 10 retried once then succeeding, 8 events; "
            f"1 in 20 failing with a traceback), into {self.header.database}. `manage.py monitor "
            "--no-alerts` processes (one consumer group), default batch of 200 entries; all events "
            "over the time from the first monitor ready (start-up done) to the empty stream. "
            "Rows: TaskRun + TaskAttempt rows written.",
            "",
            *_table(["monitors", "events/s", "per round", "ratio to one", "rows/s", "goal"], rows),
            "",
            "Rows found afterwards: "
            + "; ".join(f"{m.processes}p r{m.round}: {m.check}" for m in self.ingests)
            + ".",
        ]

    # -- 4. pages ----------------------------------------------------------------------------------

    def _pages(self) -> list[str]:
        result = self.pages
        if result is None:
            return []
        title = f"## 4. Dashboard at {result.rows:,} rows"
        if result.skipped:
            return [title, "", f"**{result.skipped}** (run with a PostgreSQL `DATABASE_URL`)."]
        generated = (
            f" Rows generated in this run ({result.generated_seconds:.0f} s)."
            if result.generated_seconds
            else " Rows reused from an earlier run."
        )
        rows = [
            [p.page, f"{p.tasktrail_ms:.1f}",
             "" if p.admin_ms is None else f"{p.admin_ms:.0f}",
             "" if p.admin_ms is None else f"{p.admin_ms / p.tasktrail_ms:.0f}x",
             _verdict(p.tasktrail_ms <= pages_section.GOAL_MS)]
            for p in result.pages
        ]  # fmt: skip
        return [
            title,
            "",
            "`python -m bench.pages` (database `tasktrail_pages`): server time through Django's "
            f"test client as a superuser, median of {result.repeat} after one warm-up request. "
            f"Goal: every tasktrail page ≤ {pages_section.GOAL_MS:.0f} ms.{generated}",
            "",
            *_table(
                ["page", "tasktrail ms", "django-celery-results admin ms", "admin / tasktrail",
                 "goal"],
                rows,
            ),
        ]  # fmt: skip

    # -- 5. publish --------------------------------------------------------------------------------

    def _publishes(self) -> list[str]:
        if not self.publishes:
            return []
        by_mode: dict[str, list[publish_cost.Measurement]] = {}
        for m in self.publishes:
            by_mode.setdefault(m.mode, []).append(m)
        plain = by_mode.get("plain")
        plain_us = median(m.us_per_call for m in plain) if plain else None
        labels = {"plain": "plain Celery", "recorder": "with the tasktrail recorder"}
        rows = []
        for mode in publish_cost.MODES:
            found = by_mode.get(mode)
            if not found:
                continue
            us = median(m.us_per_call for m in found)
            rows.append(
                [
                    labels[mode],
                    f"{us:.0f}",
                    " / ".join(f"{m.us_per_call:.0f}" for m in found),
                    f"{us / plain_us:.2f}x" if plain_us else "-",
                    f"+{us - plain_us:.0f} µs" if plain_us and mode != "plain" else "",
                ]
            )
        calls = self.publishes[0].calls
        return [
            "## 5. Publish cost",
            "",
            f"{calls:,} timed `noop.apply_async((n,))` calls to the Redis broker per measurement "
            "(after untimed warm-up calls), each measurement in a fresh process; modes alternated; "
            f"{self.rounds} round(s), median.",
            "",
            *_table(
                ["producer", "µs per call", "per round", "ratio to plain", "recorder adds"], rows
            ),
        ]


def _verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def _median_ms(values: Sequence[float | None], digits: int = 2) -> str:
    known = [v for v in values if v is not None]
    return f"{median(known):.{digits}f}" if known else "-"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]

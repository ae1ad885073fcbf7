"""The markdown report: a header stating where and how it was measured, then a table per section."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import median
from typing import Final

from bench import ingest, publish_cost, worker_overhead

RECORDER_GOAL: Final = 0.90  # recorder >= 0.90x plain Celery
TRACING_GOAL: Final = 0.05  # tracing adds <= 5% to the recorder's drain time
INGEST_GOAL: Final = 10_000  # events/s, one monitor into PostgreSQL


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
    tasks: int = 0
    rounds: int = 0
    workers: list[worker_overhead.Measurement] = field(default_factory=list)
    ingests: list[ingest.Measurement] = field(default_factory=list)
    publishes: list[publish_cost.Measurement] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        h = self.header
        lines = [
            "# tasktrail benchmarks",
            "",
            f"- Command: `{h.command}` ({h.when}, {h.minutes:.1f} min)",
            f"- Code: {h.code}",
            f"- Machine: {h.cpu}; {h.system}; {h.python}",
            f"- Database: {h.database} (`{h.database_url}`)",
            f"- Broker and stream: {h.redis} (`{h.redis_url}`)",
            f"- Packages: {h.packages}",
            f"- Load average (1/5/15 min): {h.load_start} at start, {h.load_end} at end "
            "(the machine may be shared: compare variants of one run, not runs)",
        ]
        if self.workers:
            lines += ["", *self._workers()]
        if self.ingests:
            lines += ["", *self._ingests()]
        if self.publishes:
            lines += ["", *self._publishes()]
        if self.failures:
            lines += ["", "## Failed", "", *(f"- {failure}" for failure in self.failures)]
        return "\n".join(lines) + "\n"

    def _workers(self) -> list[str]:
        by_variant: dict[str, list[worker_overhead.Measurement]] = {}
        for m in self.workers:
            by_variant.setdefault(m.variant, []).append(m)
        plain = by_variant.get("plain")
        plain_rate = median(m.tasks_per_second for m in plain) if plain else None
        untraced = by_variant.get("recorder")
        untraced_rate = median(m.tasks_per_second for m in untraced) if untraced else None
        rows = []
        for variant, label in worker_overhead.VARIANTS.items():
            found = by_variant.get(variant)
            if not found:
                continue
            rate = median(m.tasks_per_second for m in found)
            ratio = rate / plain_rate if plain_rate else None
            goal = ""
            if variant == "recorder" and ratio is not None:
                verdict = "met" if ratio >= RECORDER_GOAL else "**not met**"
                goal = f">= {RECORDER_GOAL:.2f}x: {verdict}"
            if variant == "recorder-tracing" and untraced_rate:
                added = untraced_rate / rate - 1  # drain time with tracing vs (b), same N
                verdict = "met" if added <= TRACING_GOAL else "**not met**"
                goal = f"drain time {added:+.1%} vs (b), <= +{TRACING_GOAL:.0%}: {verdict}"
            rows.append(
                [
                    label,
                    f"{rate:.0f}",
                    " / ".join(f"{m.tasks_per_second:.0f}" for m in found),
                    f"{ratio:.2f}x" if ratio is not None else "-",
                    goal,
                    _median_ms([m.worker_cpu_ms for m in found]),
                    _median_ms([m.monitor_cpu_ms for m in found]),
                ]
            )
        lines = [
            "## 1. Worker overhead",
            "",
            f"N = {self.tasks} no-op tasks (`bench.noop`: one Redis INCR) pre-published to a fresh "
            "queue per measurement, then `celery -A bench.app worker "
            + " ".join(worker_overhead.WORKER_ARGS)
            + f"` drains them; rate from the {worker_overhead.WARMUP_TASKS}th to the N-th "
            f"completion. {self.rounds} round(s), variants alternated (order reversed every other "
            "round); median and per-round figures. All variants: Celery's remote control (pidbox) "
            "off, default log level; (d) sets `CELERY_DB_REUSE_MAX` = 1000.",
            "",
            *_table(
                [
                    "variant",
                    "tasks/s (median)",
                    "per round",
                    "ratio to plain",
                    "goal",
                    "worker CPU ms/task",
                    "monitor CPU ms/task",
                ],
                rows,
            ),
            "",
            "CPU ms/task: user + system CPU time used in the timed window by the worker (main "
            "process and pool) and by the monitor process, per task completed, median over rounds "
            "(from /proc; less sensitive than tasks/s to other load on a shared machine). Not "
            "counted: Redis and PostgreSQL server processes.",
        ]
        recorder = by_variant.get("recorder")
        if recorder:
            lines += [
                "",
                "(b): `manage.py monitor --no-alerts` (alert checks cost per check, not per task, "
                "and must not act on a real installation); it starts before the worker and "
                "writes the N published events "
                "before the worker starts; in the timed window it writes the worker's events "
                "(received, started, succeeded). Keeping up: stream entries not yet written when "
                "the last task finished (per round): "
                + " / ".join(str(m.backlog_entries) for m in recorder)
                + " (each entry holds one process's events of up to 100 ms).",
            ]
        checks = []
        for variant, found in by_variant.items():
            distinct = {m.check for m in found}
            if len(distinct) == 1:
                checks.append(f"{variant}: {found[0].check} (each round)")
            else:
                checks += [f"{variant} round {m.round}: {m.check}" for m in found]
        lines += ["", "Rows found afterwards: " + "; ".join(checks) + "."]
        return lines

    def _ingests(self) -> list[str]:
        ms = self.ingests
        events_rate = median(m.events_per_second for m in ms)
        rows_rate = median(m.rows_per_second for m in ms)
        postgres = self.header.database.startswith("PostgreSQL")
        verdict = "met" if events_rate >= INGEST_GOAL else "**not met**"
        goal = f">= {INGEST_GOAL:,} events/s: {verdict}" + (
            "" if postgres else " (goal is for PostgreSQL)"
        )
        first = ms[0]
        row = [
            self.header.database,
            f"{first.events:,}",
            f"{first.tasks:,}",
            f"{first.entries:,}",
            f"{events_rate:,.0f}",
            " / ".join(f"{m.events_per_second:,.0f}" for m in ms),
            f"{rows_rate:,.0f}",
            goal,
        ]
        return [
            "## 2. Monitor ingest",
            "",
            f"E = {first.events:,} events of {first.tasks:,} tasks (4 events per task; 1 in 10 "
            "retried once then succeeding, 8 events; 1 in 20 failing with a traceback), "
            f"{ingest.EVENTS_PER_ENTRY} events per stream entry, drained by one in-process "
            "`Monitor(...).run(drain=True)` with its default batch of 200 entries. "
            "Rows are TaskRun + TaskAttempt rows written. "
            f"{len(ms)} round(s), median.",
            "",
            *_table(
                [
                    "database",
                    "events",
                    "tasks",
                    "entries",
                    "events/s (median)",
                    "per round",
                    "rows/s (median)",
                    "goal",
                ],
                [row],
            ),
            "",
            "Rows found afterwards: " + "; ".join(f"round {m.round}: {m.check}" for m in ms) + ".",
        ]

    def _publishes(self) -> list[str]:
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
            extra = (
                f"+{us - plain_us:.0f} µs ({us / plain_us:.2f}x)"
                if plain_us and mode != "plain"
                else ""
            )
            per_round = " / ".join(f"{m.us_per_call:.0f}" for m in found)
            rows.append([labels[mode], f"{us:.0f}", per_round, extra])
        calls = self.publishes[0].calls
        return [
            "## 3. Publish cost",
            "",
            f"{calls:,} timed `noop.apply_async((n,))` calls to the Redis broker per measurement "
            "(after untimed warm-up calls), each measurement in a fresh process; modes alternated; "
            f"{self.rounds} round(s), median.",
            "",
            *_table(["producer", "µs per call (median)", "per round", "recorder adds"], rows),
        ]


def _median_ms(values: Sequence[float | None]) -> str:
    known = [v for v in values if v is not None]
    return f"{median(known):.2f}" if known else "-"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]

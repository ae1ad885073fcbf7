"""One check cycle (figures → verdicts → incidents → snapshot) and one mail cycle (the notices
due). ``manage.py monitor`` runs each in a thread of its own every
``TASKTRAIL_ALERT_CHECK_SECONDS`` (``dashboard.alerts.threads``), so a slow mail server delays
only mail, and neither delays the rows.

A runner keeps nothing that matters in memory: incidents and workers (from their heartbeats) are
rows, timed conditions are in Redis. A new runner (a restarted monitor, or a second one) carries
on where the last one stopped, without a second "opened" mail.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
from django.conf import settings

from dashboard.alerts import queue_figures, redis_state, rules, task_figures
from dashboard.alerts.incidents import (
    Delivery,
    Sender,
    SyncResult,
    deliver_due,
    open_incidents,
    sync_incidents,
)
from dashboard.alerts.mail import send_notice
from dashboard.alerts.worker_probe import Probe, WorkersSeen
from dashboard.ingest.lost import gone_workers, mark_gone, mark_lost

logger = logging.getLogger("tasktrail.alerts")


@dataclass
class CycleReport:
    verdicts: list[rules.Verdict] = field(default_factory=list)
    sync: SyncResult = field(default_factory=SyncResult)
    marked_lost: int = 0
    redis_seconds: float = 0.0
    redis_round_trips: int = 0
    overview_seconds: float = 0.0  # counting the overview's figures in the database
    broker: dict[str, Any] = field(default_factory=dict)  # what the shop's broker can tell
    queue_details: dict[str, dict[str, Any]] = field(default_factory=dict)  # beyond the rules'

    def verdict(self, rule: str, subject: str) -> rules.Verdict | None:
        return next((v for v in self.verdicts if (v.rule, v.subject) == (rule, subject)), None)


def paused_queues() -> dict[str, Any]:
    """The queues an operator paused (``QueuePause`` rows), by name."""
    from dashboard.models import QueuePause
    from tasktrail.queue_pauses import MAX_QUEUES

    return {p.queue: p for p in QueuePause.objects.order_by("queue")[:MAX_QUEUES]}


def recent_resumes(since: dt.datetime) -> dict[str, float]:
    """When each queue was last resumed (Unix time), for resumes since ``since``: from the audit
    rows (the pause row is gone). A failed resume left the queue paused and does not count."""
    from dashboard.models import OperatorAction
    from dashboard.services_queues import queue_scope
    from tasktrail.queue_pauses import MAX_QUEUES

    Outcome = OperatorAction.Outcome
    rows = (
        OperatorAction.objects.filter(
            kind=OperatorAction.Kind.RESUME_QUEUE,
            at__gte=since,
            outcome__in=[Outcome.PENDING, Outcome.DONE, Outcome.PARTIAL],
        )
        .order_by("-at")
        .values_list("scope", "at")[: 4 * MAX_QUEUES]
    )
    prefix = queue_scope("")
    resumed: dict[str, float] = {}
    for scope, at in rows:
        if scope.startswith(prefix):
            resumed.setdefault(scope[len(prefix) :], at.timestamp())
    return resumed


def _within(seconds: float, limit: float) -> float | None:
    return max(0.0, seconds) if seconds < limit else None


class CheckRunner:
    def __init__(
        self,
        *,
        client: redis.Redis,
        probe: Probe,
        thresholds: rules.Thresholds | None = None,
        stream: str | None = None,
        clock: Callable[[], float] = time.time,
        celery_app: Any = None,
        check_seconds: float | None = None,
        broker_queues: queue_figures.BrokerQueues | None = None,
    ) -> None:
        self.client = client
        self.probe = probe
        self.thresholds = thresholds or rules.Thresholds.from_setting(settings.TASKTRAIL_ALERTS)
        self.stream = stream or settings.TASKTRAIL_STREAM
        self.stream_cap = int(settings.TASKTRAIL_STREAM_MAX_ENTRIES)
        self.clock = clock
        self.check_seconds = check_seconds or settings.TASKTRAIL_ALERT_CHECK_SECONDS
        self.pause_remind_seconds = float(settings.TASKTRAIL_QUEUE_PAUSE_REMIND_SECONDS)
        self.limits = task_figures.TaskLimits(self.thresholds, celery_app)
        # the shop's broker (TASKTRAIL_BROKER_URL), not the stream's Redis
        self.queues = broker_queues or queue_figures.BrokerQueues()

    def run_once(self) -> CycleReport:
        now = self.clock()
        now_dt = task_figures.now_datetime(now)
        report = CycleReport()
        timer = redis_state.RedisTimer()
        thresholds = self.thresholds
        complete: set[str] = set()

        open_rows = list(open_incidents().values_list("rule", "subject"))
        names = sorted(
            set(self.queues.names(now, timer))
            | {subject for rule, subject in open_rows if rule == rules.QUEUE_STUCK}
            | set(paused := paused_queues())  # measured even if no worker declared them
        )
        measured = self.queues.read(names, timer)  # Redis: one round trip for every queue
        # a resumed queue's held messages count their wait from the resume (rules.QueueFigures)
        grace = max((thresholds.for_queue(n).oldest_seconds for n in names), default=0.0)
        resumed = recent_resumes(now_dt - dt.timedelta(seconds=grace)) if grace > 0 else {}
        waiting = queue_figures.waiting_since(names, now_dt)
        report.broker = queue_figures.broker_summary(measured)
        broker = redis_state.read_broker(self.client, self.stream, now, timer)
        workers = self.probe()
        update = redis_state.ClockUpdate()

        # queues
        windows = sorted({thresholds.for_queue(n).no_progress_seconds for n in names} - {0.0})
        finished = task_figures.finished_per_queue(names, windows, now_dt)
        per_minute = 60 / task_figures.RATE_WINDOW.total_seconds()
        conditions: dict[str, bool | None] = {}
        figures_by_queue: dict[str, rules.QueueFigures] = {}
        for name in names:
            limits = thresholds.for_queue(name)
            reading = measured.queue(name)
            ages = queue_figures.oldest_ages(reading, waiting.get(name), now)
            counts = finished.get(name, {})
            window = limits.no_progress_seconds
            # the broker's own count of consumers (RabbitMQ) wins over the workers' answers
            consumers = reading.consumers
            if consumers is None and workers is not None:
                consumers = workers.consumers(name)
            figures = rules.QueueFigures(
                name=name,
                depth=reading.depth,
                oldest_age=ages.rules,
                consumers=consumers,
                finished_in_window=counts.get(f"w{int(window)}", 0) if window else None,
                finished_per_minute=counts.get("rate", 0) * per_minute,
                paused=name in paused,
                resumed_ago=_within(now - resumed[name], limits.oldest_seconds)
                if name in resumed
                else None,
            )
            figures_by_queue[name] = figures
            report.queue_details[name] = {
                "broker_oldest_age": ages.broker,
                "records_oldest_age": ages.records,
                "unacked": reading.unacked,
                "idle_since": reading.idle_since,
                "absent": reading.absent,
                "consumers_from": "broker" if reading.consumers is not None else "workers",
            }
            for condition, holds in rules.queue_conditions(figures).items():
                conditions[f"{condition}:{name}"] = holds
        held = redis_state.held_for(broker.since, conditions, now, update)
        for name, figures in figures_by_queue.items():
            prefix = {f"{c}:{name}": c for c in (rules.NO_CONSUMER, rules.NO_PROGRESS)}
            queue_held = {c: held[key] for key, c in prefix.items() if key in held}
            report.verdicts.append(
                rules.evaluate_queue(figures, thresholds.for_queue(name), queue_held)
            )

        # paused queues: a reminder once paused too long; every pause is looked at, so a
        # resumed queue's reminder resolves
        for name, pause in paused.items():
            depth = figures_by_queue[name].depth if name in figures_by_queue else None
            pause_figures = rules.PauseFigures(
                name, max(0.0, now - pause.paused_at.timestamp()), pause.paused_by, pause.reason,
                depth,
            )  # fmt: skip
            report.verdicts.append(rules.evaluate_pause(pause_figures, self.pause_remind_seconds))
        complete.add(rules.QUEUE_PAUSED)

        # tasks over their limit: every STARTED task is looked at, so absent names are clear
        running = task_figures.running_tasks(now_dt, self.limits, self.limits.shortest())
        report.verdicts += rules.evaluate_tasks(running)
        complete.add(rules.TASK_OVERDUE)

        # workers whose heartbeats stopped without a goodbye: gone, and only then their tasks LOST
        report.marked_lost += self.mark_gone(now, broker.lag_seconds)
        unfinished = task_figures.unfinished_per_worker(now_dt)
        silent = gone_workers()
        subjects = set(silent) | {s for r, s in open_rows if r == rules.WORKER_LOST}
        for host in sorted(subjects):
            running_n, lost_n = unfinished.get(host, (0, 0))
            last = silent.get(host)
            silent_for = None if last is None else max(0.0, now - last.timestamp())
            report.verdicts.append(
                rules.evaluate_worker(
                    host, silent_for, running_n, lost_n, thresholds.worker_lost_seconds
                )
            )
        complete.add(rules.WORKER_LOST)

        # the monitor's own lag on the stream, and how full the stream is against its cap
        stream = self.stream_figures(broker)
        if broker.lag_seconds is not None:
            report.verdicts.append(
                rules.evaluate_monitor(
                    stream, thresholds.monitor_lag_seconds, thresholds.stream_full_fraction, now
                )
            )

        # the overview page's figures: counted once per check, not on every page load
        overview = {**task_figures.overview_figures(now_dt), "every": self.check_seconds}
        report.overview_seconds = overview["seconds"]

        report.sync = sync_incidents(report.verdicts, complete, now_dt)
        for opened in report.sync.opened:
            logger.warning("incident opened: %s: %s", opened.headline, opened.summary)
        for resolved in report.sync.resolved:
            logger.info("incident resolved: %s", resolved.headline)

        redis_state.write_state(
            self.client,
            self.stream,
            update,
            self.snapshot(now, report, figures_by_queue, stream, workers, timer.seconds),
            ttl=int(max(60.0, 6 * self.check_seconds)),
            timer=timer,
            overview=overview,
        )
        report.redis_seconds, report.redis_round_trips = timer.seconds, timer.round_trips
        return report

    def mark_gone(self, now: float, lag_seconds: float | None) -> int:
        """Online workers silent for ``worker_lost_seconds`` become gone and their STARTED tasks
        LOST; returns how many tasks. Heartbeats wait in the stream like events, so a worker's
        silence is counted only up to the oldest entry no monitor has written (``lag_seconds``):
        a monitor that was down or is behind never takes its own backlog for silent workers. The
        lag unknown (Redis did not say): nobody is declared gone."""
        limit = self.thresholds.worker_lost_seconds
        if limit <= 0 or lag_seconds is None:
            return 0
        now_dt = task_figures.now_datetime(now)
        silent_since = task_figures.now_datetime(now - max(0.0, lag_seconds) - limit)
        lost = 0
        for host in mark_gone(silent_since, now_dt):
            marked = mark_lost(host)
            lost += marked
            logger.warning(
                "no heartbeat from %s for %s and no goodbye: marked gone, %d running tasks LOST",
                host,
                rules.duration_words(limit),
                marked,
            )
        return lost

    def snapshot(
        self,
        now: float,
        report: CycleReport,
        figures: dict[str, rules.QueueFigures],
        stream: rules.StreamFigures,
        workers: WorkersSeen | None,
        redis_seconds: float,
    ) -> dict[str, Any]:
        """What the pages and /metrics show between checks."""
        queues = {}
        for verdict in report.verdicts:
            if verdict.rule != rules.QUEUE_STUCK:
                continue
            f = figures[verdict.subject]
            queues[verdict.subject] = {
                "state": verdict.state,
                "words": verdict.words,
                "depth": f.depth,
                "oldest_age": f.oldest_age,
                "consumers": f.consumers,
                "finished_per_minute": f.finished_per_minute,
                **report.queue_details.get(verdict.subject, {}),
            }
        return {
            "at": now,
            "every": self.check_seconds,
            "queues": queues,
            "broker": report.broker,
            "workers": None if workers is None else len(workers.queues),
            "redis_seconds": redis_seconds,
            "stream": {
                "lag_entries": stream.lag_entries,
                "lag_seconds": stream.lag_seconds,
                "length": stream.length,
                "cap": stream.cap,
                "trimmed": stream.trimmed,
                "trimmed_at": stream.trimmed_at,
            },
        }

    def stream_figures(self, broker: redis_state.BrokerFigures) -> rules.StreamFigures:
        """The cap the task processes published (they enforce it), else the service's setting."""
        published = int(broker.trimmed.get("cap") or 0)
        return rules.StreamFigures(
            lag_seconds=broker.lag_seconds,
            lag_entries=broker.lag_entries,
            length=broker.stream_length,
            cap=published if published > 0 else self.stream_cap,
            trimmed=int(broker.trimmed.get("entries") or 0),
            trimmed_at=broker.trimmed.get("at"),
        )


class MailRunner:
    """Sends the notices due (opened, reminder, recovered). Each is leased on its incident row
    first, so several monitors never send one twice, and a send that hangs holds only this."""

    def __init__(
        self,
        *,
        thresholds: rules.Thresholds | None = None,
        clock: Callable[[], float] = time.time,
        send: Sender = send_notice,
    ) -> None:
        self.thresholds = thresholds or rules.Thresholds.from_setting(settings.TASKTRAIL_ALERTS)
        self.clock = clock
        self.send = send

    def run_once(self) -> Delivery:
        now_dt = task_figures.now_datetime(self.clock())
        return deliver_due(now_dt, dt.timedelta(seconds=self.thresholds.remind_seconds), self.send)

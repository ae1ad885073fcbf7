"""The alert rules as pure functions: figures and thresholds in, a verdict (with its words) out.

Nothing here reads Redis, the database or the clock; ``dashboard.alerts.runner`` gathers the
figures (``redis_state``, ``task_figures``, the workers' heartbeat rows) and says how long
each timed condition has held.

One incident per *subject*: the three queue rules (oldest message too old, messages waiting with
no consumer, messages waiting and nothing finished) share the rule ``queue_stuck``, so a stuck queue
sends one mail whichever of them fire first; the verdict lists the ones that fired.

Hysteresis: a queue incident opens when the queue is *stuck* and closes only once it is *ok* again
(not while it is merely *warning*), so a queue hovering around a threshold does not flap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Final, Literal

from dashboard.constants import (
    MONITOR_LAG,
    QUEUE_PAUSED,
    QUEUE_STUCK,
    TASK_OVERDUE,
    WORKER_LOST,
    headline,
)

MONITOR_SUBJECT: Final = "monitor"

# timed conditions (the checks record since when each has held)
NO_CONSUMER: Final = "no_consumer"
NO_PROGRESS: Final = "no_progress"

State = Literal["ok", "warning", "stuck"]


# -- thresholds ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueThresholds:
    """Seconds; 0 turns a rule off. ``enabled: False`` ignores the queue altogether."""

    oldest_seconds: float = 300.0  # stuck: the oldest waiting message is older than this
    warning_oldest_seconds: float = 60.0  # warning (shown, not mailed)
    no_consumer_seconds: float = 60.0  # stuck: messages wait and no worker consumes the queue
    no_progress_seconds: float = 600.0  # stuck: messages wait and nothing finished for this long
    enabled: bool = True


@dataclass(frozen=True)
class Thresholds:
    queue: QueueThresholds = field(default_factory=QueueThresholds)
    queues: Mapping[str, QueueThresholds] = field(default_factory=dict)
    # A STARTED task older than its limit: per task name, else the task's own Celery time limit,
    # else this default.
    task_max_runtime_seconds: float = 3600.0
    tasks: Mapping[str, float] = field(default_factory=dict)
    # A worker is gone when its heartbeats (every TASKTRAIL_HEARTBEAT_INTERVAL, 5 s) stopped for
    # this long without a goodbye: twelve missed beats, so a Redis hiccup is not a death.
    worker_lost_seconds: float = 60.0
    monitor_lag_seconds: float = 120.0  # age of the oldest stream entry no monitor has written
    # The stream holds this fraction of its length cap (TASKTRAIL_STREAM_MAX_ENTRIES): past the
    # cap the writers drop the oldest entries, so this fires before any is lost.
    stream_full_fraction: float = 0.5
    remind_seconds: float = 1800.0  # reminder mail while an incident stays open

    def for_queue(self, name: str) -> QueueThresholds:
        return self.queues.get(name, self.queue)

    @classmethod
    def from_setting(cls, raw: Mapping[str, Any] | None) -> Thresholds:
        """Build from the ``TASKTRAIL_ALERTS`` setting; unknown keys are an error, not ignored."""
        raw = dict(raw or {})
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"TASKTRAIL_ALERTS: unknown keys {sorted(unknown)}")
        base = _queue_thresholds(QueueThresholds(), raw.pop("queue", {}), "queue")
        queues = {
            str(name): _queue_thresholds(base, values, f"queues[{name!r}]")
            for name, values in dict(raw.pop("queues", {})).items()
        }
        tasks = {str(name): float(limit) for name, limit in dict(raw.pop("tasks", {})).items()}
        scalars = {key: float(value) for key, value in raw.items()}
        return cls(queue=base, queues=queues, tasks=tasks, **scalars)


def _queue_thresholds(base: QueueThresholds, values: Any, where: str) -> QueueThresholds:
    values = dict(values or {})
    known = {f.name for f in fields(QueueThresholds)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"TASKTRAIL_ALERTS {where}: unknown keys {sorted(unknown)}")
    changes: dict[str, Any] = {
        k: bool(v) if k == "enabled" else float(v) for k, v in values.items()
    }
    return replace(base, **changes)


# -- verdicts --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What one rule says about one subject at one check."""

    rule: str
    subject: str
    state: State
    words: str = ""  # figures for the mail subject: "oldest message waiting 7m12s, 342 waiting"
    cause: str = ""  # the likely cause, for the mail body
    fired: tuple[str, ...] = ()  # which conditions made it stuck
    figures: Mapping[str, Any] = field(default_factory=dict)
    known: bool = True  # False: a figure that could make it stuck is missing (do not resolve)

    @property
    def firing(self) -> bool:
        return self.state == "stuck"

    @property
    def headline(self) -> str:
        return headline(self.rule, self.subject)


def duration_words(seconds: float | None) -> str:
    """Compact: 45s, 7m12s, 2h03m."""
    if seconds is None:
        return "?"
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _over(value: float | None, limit: float) -> bool:
    return limit > 0 and value is not None and value >= limit


# -- queues ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueFigures:
    name: str
    depth: int | None  # messages waiting (Redis: with priority sub-queues); None: the broker
    # cannot tell (SQS...) or did not answer: then no queue rule fires, and none resolves
    oldest_age: float | None  # seconds; None when no waiting message carries a publish stamp
    consumers: int | None  # workers consuming it; None when the workers could not be asked
    finished_in_window: int | None  # tasks finished within no_progress_seconds; None: unknown
    finished_per_minute: float | None = None  # over the last five minutes, for display
    paused: bool = False  # an operator paused it: paused, not stuck (see evaluate_pause)
    # seconds since an operator resumed it, when recent: its messages were held on purpose, so
    # their wait counts from the resume (the workers get the oldest-message limits afresh)
    resumed_ago: float | None = None

    @property
    def oldest_age_for_rules(self) -> float | None:
        """The oldest message's age as the rules judge it: no more than the time since a resume."""
        if self.oldest_age is None or self.resumed_ago is None:
            return self.oldest_age
        return min(self.oldest_age, max(0.0, self.resumed_ago))


def queue_conditions(figures: QueueFigures) -> dict[str, bool | None]:
    """The timed conditions as they are right now (None: cannot tell). A paused queue has none:
    their clocks stop, so after a resume the workers get the whole grace again."""
    if figures.paused:
        return {NO_CONSUMER: False, NO_PROGRESS: False}
    if figures.depth is None:
        return {NO_CONSUMER: None, NO_PROGRESS: None}
    waiting = figures.depth > 0
    consumers, finished = figures.consumers, figures.finished_in_window
    return {
        NO_CONSUMER: None if consumers is None else waiting and consumers == 0,
        NO_PROGRESS: None if finished is None else waiting and finished == 0,
    }


def evaluate_queue(
    figures: QueueFigures, limits: QueueThresholds, held: Mapping[str, float]
) -> Verdict:
    """``held``: seconds each timed condition has held continuously (absent: it does not hold).
    A paused queue is never stuck nor warning: it waits on purpose."""
    if figures.paused:
        limits = replace(limits, enabled=False)
    fired: list[str] = []
    waiting = figures.depth is not None and figures.depth > 0
    oldest = figures.oldest_age_for_rules
    if limits.enabled and waiting:
        if _over(oldest, limits.oldest_seconds):
            fired.append("oldest")
        if _over(held.get(NO_CONSUMER), limits.no_consumer_seconds):
            fired.append(NO_CONSUMER)
        if _over(held.get(NO_PROGRESS), limits.no_progress_seconds):
            fired.append(NO_PROGRESS)
    if fired:
        state: State = "stuck"
    elif (
        limits.enabled
        and waiting
        and (
            _over(oldest, limits.warning_oldest_seconds)
            or (limits.no_consumer_seconds > 0 and NO_CONSUMER in held)
            or (limits.no_progress_seconds > 0 and NO_PROGRESS in held)
        )
    ):
        state = "warning"
    else:
        state = "ok"
    unknown = (figures.consumers is None and limits.no_consumer_seconds > 0) or (
        figures.finished_in_window is None and limits.no_progress_seconds > 0
    )
    return Verdict(
        rule=QUEUE_STUCK,
        subject=figures.name,
        state=state,
        words=_queue_words(figures, fired, limits),
        cause=_queue_cause(figures, fired),
        fired=tuple(fired),
        figures={
            "depth": figures.depth,
            "oldest_age": figures.oldest_age,
            "consumers": figures.consumers,
            "finished_in_window": figures.finished_in_window,
            "finished_per_minute": figures.finished_per_minute,
            "resumed_ago": figures.resumed_ago,
            "no_consumer_for": held.get(NO_CONSUMER),
            "no_progress_for": held.get(NO_PROGRESS),
        },
        # an unknown depth could hide a stuck queue: an open incident stays open
        known=figures.paused
        or (figures.depth is not None and not (limits.enabled and waiting and unknown)),
    )


def _queue_words(figures: QueueFigures, fired: list[str], limits: QueueThresholds) -> str:
    parts = ["paused"] if figures.paused else []
    if figures.depth is None:
        parts.append("depth unknown")
    elif figures.oldest_age is not None and figures.depth > 0:
        parts.append(f"oldest message waiting {duration_words(figures.oldest_age)}")
    if figures.depth is not None:
        parts.append(f"{figures.depth} waiting")
    if figures.consumers == 0:
        parts.append("no consumer")
    elif figures.consumers is not None:
        parts.append(f"{figures.consumers} consumer{'s' if figures.consumers != 1 else ''}")
    if NO_PROGRESS in fired:
        parts.append(f"nothing finished in {duration_words(limits.no_progress_seconds)}")
    if figures.resumed_ago is not None and not figures.paused:
        parts.append(f"resumed {duration_words(figures.resumed_ago)} ago")
    return ", ".join(parts)


def _queue_cause(figures: QueueFigures, fired: list[str]) -> str:
    if not fired:
        return ""
    if figures.consumers == 0:
        return (
            f"No worker consumes this queue: its workers are down, or none was started with "
            f"-Q {figures.name}."
        )
    if figures.consumers is None:
        return "The workers did not answer: check that they are running and reach the broker."
    if NO_PROGRESS in fired:
        return (
            "Workers consume this queue but nothing finishes: every worker process is probably "
            "busy with long or hung tasks."
        )
    return (
        "Workers take messages more slowly than they arrive: add workers or concurrency, or look "
        "for tasks that became slow."
    )


@dataclass(frozen=True)
class PauseFigures:
    queue: str
    paused_for: float  # seconds
    paused_by: str
    reason: str
    depth: int | None = None  # waiting at the check, when the queue was measured


def evaluate_pause(pause: PauseFigures, remind_seconds: float) -> Verdict:
    """A reminder that a queue is still paused: stuck once paused for ``remind_seconds`` (0:
    never), resolved on resume (the runner checks every paused queue: a resumed one is absent)."""
    due = _over(pause.paused_for, remind_seconds)
    words = f"paused {duration_words(pause.paused_for)} ago by {pause.paused_by}"
    if pause.depth is not None:
        words += f", {pause.depth} waiting"
    return Verdict(
        rule=QUEUE_PAUSED,
        subject=pause.queue,
        state="stuck" if due else "ok",
        words=words,
        cause=(
            f"An operator paused this queue: no worker consumes it, and its messages wait. The "
            f"reason given: {pause.reason[:300]}. Resume it from the Queues page once it may run."
            if due
            else ""
        ),
        fired=("paused",) if due else (),
        figures={
            "paused_for": pause.paused_for,
            "paused_by": pause.paused_by,
            "reason": pause.reason[:300],
            "depth": pause.depth,
        },
    )


# -- tasks, workers, monitor -----------------------------------------------------------------------


@dataclass(frozen=True)
class RunningTask:
    task_id: str
    name: str
    worker: str | None
    runtime: float  # seconds since it started
    limit: float  # the limit that applies to it


def evaluate_tasks(running: Iterable[RunningTask]) -> list[Verdict]:
    """One firing verdict per task name with a task over its limit (names not listed are ok)."""
    over: dict[str, list[RunningTask]] = {}
    for task in running:
        if task.limit > 0 and task.runtime >= task.limit:
            over.setdefault(task.name, []).append(task)
    verdicts = []
    for name, tasks in sorted(over.items()):
        tasks.sort(key=lambda t: -t.runtime)
        longest = tasks[0]
        count = len(tasks)
        words = (
            f"{count} task{'s' if count != 1 else ''} running longer than "
            f"{duration_words(longest.limit)}, longest {duration_words(longest.runtime)}"
        )
        verdicts.append(
            Verdict(
                rule=TASK_OVERDUE,
                subject=name,
                state="stuck",
                words=words,
                cause=(
                    "The task is hung (waiting on a lock, a slow external service, I/O) or the "
                    "event saying it finished was lost. Its worker may need a terminate."
                ),
                fired=("runtime",),
                figures={
                    "count": count,
                    "limit": longest.limit,
                    "longest": longest.runtime,
                    "tasks": [
                        {"task_id": t.task_id, "worker": t.worker, "runtime": t.runtime}
                        for t in tasks[:10]
                    ],
                },
            )
        )
    return verdicts


def evaluate_worker(
    worker: str, silent_for: float | None, running: int, lost: int, limit: float
) -> Verdict:
    """A worker with unfinished tasks (running, or lost and not retried) whose heartbeats stopped
    without a goodbye (it is gone).

    ``silent_for`` None: the worker is not gone (beating, or it said goodbye)."""
    gone = limit > 0 and _over(silent_for, limit) and (running + lost) > 0
    tasks = running + lost
    words = (
        f"silent for {duration_words(silent_for)} with {tasks} unfinished "
        f"task{'s' if tasks != 1 else ''}"
    )
    return Verdict(
        rule=WORKER_LOST,
        subject=worker,
        state="stuck" if gone else "ok",
        words=words if silent_for is not None else "heartbeats coming",
        cause=(
            "The worker's heartbeats stopped, without a goodbye, while it ran tasks: it was "
            "killed (out of memory, a deploy) or its host or network is down. Its running tasks "
            "are marked LOST; retry them from the tasks page once you know they are safe to run "
            "again."
            if gone
            else ""
        ),
        fired=("silent",) if gone else (),
        figures={"silent_for": silent_for, "running": running, "lost": lost},
    )


@dataclass(frozen=True)
class StreamFigures:
    """The event stream as the check read it. Acknowledged entries are deleted, so ``length`` is
    what no monitor has finished; ``trimmed`` counts entries the writers dropped past the cap."""

    lag_seconds: float | None = None  # age of the oldest entry not yet written
    lag_entries: int | None = None  # entries not yet delivered to a monitor
    length: int | None = None
    cap: int = 0  # the writers' length cap; 0: none known
    trimmed: int = 0  # in all, since the counter was created
    trimmed_at: float | None = None  # the latest trim

    def fill(self) -> float | None:
        if self.length is None or self.cap <= 0:
            return None
        return self.length / self.cap


def evaluate_monitor(
    stream: StreamFigures, limit: float, full_fraction: float = 0.5, now: float | None = None
) -> Verdict:
    """Behind: the oldest unwritten event is older than ``limit``, or the stream holds more than
    ``full_fraction`` of its cap (entries are dropped at the cap: this says so before)."""
    lagging = _over(stream.lag_seconds, limit)
    fill = stream.fill()
    filling = full_fraction > 0 and fill is not None and fill >= full_fraction
    behind = lagging or filling
    words = (
        f"oldest unwritten event {duration_words(stream.lag_seconds)} old, "
        f"{stream.lag_entries or 0} entries"
    )
    if fill is not None and (filling or stream.trimmed):
        words += f"; the stream holds {stream.length:,} entries, {fill:.0%} of its cap"
    if stream.trimmed:
        ago = (
            ""
            if now is None or stream.trimmed_at is None
            else f", the latest {duration_words(now - stream.trimmed_at)} ago"
        )
        words += f"; {stream.trimmed:,} entries dropped by the cap{ago}"
    cause = ""
    if behind:
        cause = (
            "The monitor writes events more slowly than they arrive: the database is slow or "
            "unreachable, or one monitor is not enough (run another; they share the work)."
        )
        if filling:
            cause += (
                f" At {stream.cap:,} entries (TASKTRAIL_STREAM_MAX_ENTRIES) the task processes "
                "drop the oldest events no monitor has written; those tasks' rows would miss them."
            )
    return Verdict(
        rule=MONITOR_LAG,
        subject=MONITOR_SUBJECT,
        state="stuck" if behind else "ok",
        words=words,
        cause=cause,
        fired=tuple(name for name, on in (("lag", lagging), ("stream_full", filling)) if on),
        figures={
            "lag_seconds": stream.lag_seconds,
            "lag_entries": stream.lag_entries,
            "length": stream.length,
            "cap": stream.cap,
            "trimmed": stream.trimmed,
        },
    )

"""The task page's timeline, from the recorded rows alone (no trace backend needed).

Two pictures, each on its own time scale, drawn as plain HTML bars whose offsets and widths are the
percentages computed here:

- the task's attempts: the countdown/ETA delay, the wait in the queue and the run of each attempt;
- the workflow around the task: its root and every task recorded under that root (chains, groups,
  children of children), as a tree ordered by first sight, with state and duration. Bounded: a root
  with thousands of descendants shows the first ``MAX_NODES``, plus the task's own parent chain and
  children, and says how many were left out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from django.db.models import Q
from django.utils import timezone

from dashboard.models import TaskAttempt, TaskRun
from dashboard.selectors.tasks import TaskDetail

MAX_NODES: Final = 200
MAX_DEPTH: Final = 12  # indentation stops growing here (the depth is still shown)
MIN_WIDTH: Final = 0.4  # percent: a 1 ms run on an hour's scale stays visible
NODE_FIELDS: Final = (
    "id", "task_id", "name", "state", "parent_id", "root_id", "group_id", "first_seen_at",
    "published_at", "started_at", "finished_at", "updated_at", "runtime", "queue_wait",
)  # fmt: skip


@dataclass(frozen=True)
class Segment:
    kind: str  # "delay" (countdown/ETA), "wait" (in the queue), "run"
    left: float  # percent of the scale
    width: float  # percent of the scale
    seconds: float


@dataclass(frozen=True)
class AttemptBar:
    attempt: TaskAttempt
    segments: list[Segment]


@dataclass(frozen=True)
class WorkflowNode:
    task: TaskRun
    depth: int
    indent: int  # depth capped at MAX_DEPTH, for the layout
    current: bool  # the task this page is about
    orphan: bool  # its parent is not recorded (or not among the rows shown)
    seconds: float | None  # first sight (publish) to finish, or to now while running
    bar: Segment | None


@dataclass(frozen=True)
class Timeline:
    attempts: list[AttemptBar]
    attempt_seconds: float  # length of the attempts' scale
    nodes: list[WorkflowNode]
    workflow_seconds: float
    left_out: int  # workflow rows not shown

    @property
    def has_workflow(self) -> bool:
        return len(self.nodes) > 1


def task_timeline(detail: TaskDetail, *, now: dt.datetime | None = None) -> Timeline:
    now = now or timezone.now()
    attempts, attempt_seconds = _attempt_bars(detail.attempts, now)
    nodes, workflow_seconds, left_out = _workflow(detail, now)
    return Timeline(attempts, attempt_seconds, nodes, workflow_seconds, left_out)


# -- attempts ---------------------------------------------------------------------------------


def _attempt_bars(
    attempts: Sequence[TaskAttempt], now: dt.datetime
) -> tuple[list[AttemptBar], float]:
    spans = []
    for a in attempts:
        begin = _first(a.published_at, a.received_at, a.started_at)
        end = a.finished_at or (now if a.started_at else None) or _first(a.started_at, begin)
        spans.append((a, begin, end))
    known = [(b, e) for _, b, e in spans if b is not None and e is not None]
    if not known:
        return [AttemptBar(a, []) for a in attempts], 0.0
    t0 = min(b for b, _ in known)
    t1 = max(e for _, e in known)
    scale = Scale(t0, t1)
    bars = []
    for a, begin, end in spans:
        segments: list[Segment] = []
        if begin is not None:
            ready = max(begin, a.eta) if a.eta else begin
            if a.eta and a.eta > begin:
                segments.append(scale.segment("delay", begin, min(a.eta, a.started_at or a.eta)))
            if a.started_at:
                segments.append(scale.segment("wait", min(ready, a.started_at), a.started_at))
                segments.append(scale.segment("run", a.started_at, end or a.started_at))
            else:  # not started yet: waiting until now (or until it was revoked)
                segments.append(scale.segment("wait", ready, max(ready, end or now)))
        bars.append(AttemptBar(a, [s for s in segments if s.seconds >= 0]))
    return bars, scale.seconds


# -- workflow ---------------------------------------------------------------------------------


def _workflow(detail: TaskDetail, now: dt.datetime) -> tuple[list[WorkflowNode], float, int]:
    task = detail.task
    root_id = task.root_id or task.task_id
    family = Q(root_id=root_id) | Q(task_id=root_id)
    if task.group_id:
        family |= Q(group_id=task.group_id)
    rows = list(
        TaskRun.objects.filter(family)
        .only(*NODE_FIELDS)
        .order_by("first_seen_at", "id")[: MAX_NODES + 1]
    )
    total = len(rows)
    if total > MAX_NODES:
        total = TaskRun.objects.filter(family).count()
        rows = rows[:MAX_NODES]
    # Whatever the cut, the task itself, its parent chain and its children are shown.
    by_id = {r.task_id: r for r in rows}
    for extra in (task, detail.parent, detail.root, *detail.children):
        if extra is not None:
            by_id.setdefault(extra.task_id, extra)
    left_out = max(0, total - len(by_id))
    ordered = sorted(by_id.values(), key=lambda r: (r.first_seen_at, r.id))
    starts = [r.published_at or r.first_seen_at for r in ordered]
    ends = [e for e in (_node_end(r, now) for r in ordered) if e is not None]
    scale = Scale(min(starts), max(ends, default=now))
    nodes = []
    for row, depth, orphan in _depth_first(ordered):
        start, end = _first(row.published_at, row.first_seen_at), _node_end(row, now)
        nodes.append(
            WorkflowNode(
                task=row,
                depth=depth,
                indent=min(depth, MAX_DEPTH),
                current=row.task_id == task.task_id,
                orphan=orphan,
                seconds=_seconds(start, end),
                bar=scale.segment("run", start, end) if start and end else None,
            )
        )
    return nodes, scale.seconds, left_out


def _depth_first(rows: Sequence[TaskRun]) -> Iterable[tuple[TaskRun, int, bool]]:
    """Rows as a tree (by parent id), depth first, siblings in first-seen order."""
    ids = {r.task_id for r in rows}
    children: dict[str, list[TaskRun]] = {}
    tops: list[TaskRun] = []
    for row in rows:
        parent = row.parent_id
        if parent and parent in ids and parent != row.task_id:
            children.setdefault(parent, []).append(row)
        else:
            tops.append(row)
    seen: set[str] = set()
    stack = [(row, 0) for row in reversed(tops)]
    while stack:
        row, depth = stack.pop()
        if row.task_id in seen:  # a parent id loop in hostile data: show each row once
            continue
        seen.add(row.task_id)
        orphan = depth == 0 and bool(row.parent_id) and row.parent_id != row.task_id
        yield row, depth, orphan
        stack.extend((child, depth + 1) for child in reversed(children.get(row.task_id, [])))


def _node_end(row: TaskRun, now: dt.datetime) -> dt.datetime | None:
    if row.finished_at:
        return row.finished_at
    return now if not row.is_finished else row.updated_at


# -- scale ----------------------------------------------------------------------------------------


class Scale:
    """Maps times between ``start`` and ``end`` to percentages of the bar's width."""

    def __init__(self, start: dt.datetime, end: dt.datetime) -> None:
        self.start = start
        self.seconds = max((end - start).total_seconds(), 0.0)

    def _percent(self, when: dt.datetime) -> float:
        if self.seconds <= 0:
            return 0.0
        return min(100.0, max(0.0, (when - self.start).total_seconds() / self.seconds * 100))

    def segment(self, kind: str, begin: dt.datetime, end: dt.datetime) -> Segment:
        left = self._percent(begin)
        width = max(self._percent(end) - left, MIN_WIDTH)
        return Segment(
            kind=kind,
            left=round(min(left, 100.0 - MIN_WIDTH), 2),
            width=round(min(width, 100.0 - min(left, 100.0 - MIN_WIDTH)), 2),
            seconds=(end - begin).total_seconds(),
        )


def _first(*values: dt.datetime | None) -> dt.datetime | None:
    return next((v for v in values if v is not None), None)


def _seconds(begin: dt.datetime | None, end: dt.datetime | None) -> float | None:
    if begin is None or end is None:
        return None
    return max(0.0, (end - begin).total_seconds())

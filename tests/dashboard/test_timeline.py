"""The task page's timeline, from rows only: attempt bars and the workflow tree."""

from __future__ import annotations

import datetime as dt

import pytest

from dashboard.ingest.writer import write_events
from dashboard.models import TaskRun
from dashboard.selectors import timeline as timeline_module
from dashboard.selectors.tasks import task_detail
from dashboard.selectors.timeline import task_timeline
from tests.conftest import event, new_task_id, story_retry_then_fail, story_success

T0 = 1_750_000_000.0
NOW = dt.datetime.fromtimestamp(T0 + 100, tz=dt.UTC)


def timeline_of(task_id):
    detail = task_detail(task_id=task_id)
    assert detail is not None
    return task_timeline(detail, now=NOW)


def segments(bar):
    return [(s.kind, round(s.seconds, 3)) for s in bar.segments]


@pytest.mark.django_db
def test_attempt_bars_split_countdown_queue_wait_and_run():
    task_id = new_task_id()
    write_events(story_retry_then_fail(task_id, t0=T0))
    timeline = timeline_of(task_id)
    first, second = timeline.attempts
    # attempt 1: published at t0, started 0.2 s later, failed (retry) at t0 + 0.31
    assert segments(first) == [("wait", 0.2), ("run", 0.11)]
    # attempt 2: republished at t0 + 0.3 with a 1 s countdown, started at t0 + 1.4, failed at 1.5
    assert segments(second) == [("delay", 1.0), ("wait", 0.1), ("run", 0.1)]
    assert timeline.attempt_seconds == pytest.approx(1.5)
    assert first.segments[0].left == 0.0
    run = second.segments[-1]
    assert run.left + run.width == pytest.approx(100.0, abs=0.01)
    shown = [s for bar in timeline.attempts for s in bar.segments]
    assert all(0 <= s.left <= 100 and 0 < s.width <= 100 for s in shown)


@pytest.mark.django_db
def test_a_lone_task_has_no_workflow_tree():
    task_id = new_task_id()
    write_events(story_success(task_id, t0=T0))
    timeline = timeline_of(task_id)
    assert not timeline.has_workflow
    assert [n.task.task_id for n in timeline.nodes] == [task_id]


def chain_events(root, child, grandchild, sibling):
    def task(task_id, parent, start, end, state="succeeded"):
        return [
            event("published", task_id, start, name=f"shop.{task_id[:4]}", queue="default",
                  retries=0, published_at=start, parent_id=parent, root_id=root),
            event("started", task_id, start + 0.1, retries=0, hostname="w", pid=1),
            event(state, task_id, end, retries=0, hostname="w", pid=1, runtime=end - start - 0.1),
        ]  # fmt: skip

    return (
        task(root, None, T0, T0 + 1)
        + task(child, root, T0 + 1, T0 + 3)
        + task(grandchild, child, T0 + 3, T0 + 4, state="failed")
        + task(sibling, root, T0 + 1.5, T0 + 2)
    )


@pytest.mark.django_db
def test_workflow_tree_from_the_root_depth_first():
    root, child, grandchild, sibling = (new_task_id() for _ in range(4))
    write_events(chain_events(root, child, grandchild, sibling))
    # a Celery retry is published from inside the task: its parent id is itself
    write_events([event("published", child, T0 + 2, retries=1, published_at=T0 + 2,
                        parent_id=child, root_id=root)])  # fmt: skip
    timeline = timeline_of(grandchild)
    tree = [(n.task.task_id, n.depth, n.current) for n in timeline.nodes]
    assert tree == [
        (root, 0, False),
        (child, 1, False),
        (grandchild, 2, True),
        (sibling, 1, False),
    ]
    assert timeline.has_workflow and timeline.left_out == 0
    assert timeline.workflow_seconds == pytest.approx(4.0)
    nodes = {n.task.task_id: n for n in timeline.nodes}
    assert nodes[grandchild].task.state == "FAILURE"
    assert nodes[child].seconds == pytest.approx(2.0)
    assert nodes[root].bar.left == 0.0 and nodes[grandchild].bar.left == pytest.approx(75.0)
    assert not any(n.orphan for n in timeline.nodes)


@pytest.mark.django_db
def test_workflow_is_bounded_but_keeps_the_task_and_its_family(monkeypatch):
    monkeypatch.setattr(timeline_module, "MAX_NODES", 3)
    root = new_task_id()
    events = [event("published", root, T0, name="shop.root", retries=0, published_at=T0,
                    root_id=root)]  # fmt: skip
    children = [new_task_id() for _ in range(6)]
    for n, child in enumerate(children):
        events.append(event("published", child, T0 + n + 1, name="shop.part", retries=0,
                            published_at=T0 + n + 1, parent_id=root, root_id=root))  # fmt: skip
    write_events(events)
    timeline = timeline_of(children[-1])  # the newest: beyond the first MAX_NODES rows
    shown = [n.task.task_id for n in timeline.nodes]
    assert children[-1] in shown and root in shown
    assert len(shown) == 4 and timeline.left_out == 3


@pytest.mark.django_db
def test_parent_not_recorded_is_marked():
    task_id = new_task_id()
    write_events([event("published", task_id, T0, name="shop.orphan", retries=0, published_at=T0,
                        parent_id="gone", root_id="gone")])  # fmt: skip
    [node] = timeline_of(task_id).nodes
    assert node.orphan and node.depth == 0


@pytest.mark.django_db
def test_task_detail_of_a_row_naming_itself_as_parent_has_no_parent():
    # rows recorded before self-parents were dropped at ingest may still hold one
    task_id = new_task_id()
    write_events(story_success(task_id, t0=T0))
    TaskRun.objects.filter(task_id=task_id).update(parent_id=task_id)
    detail = task_detail(task_id=task_id)
    assert detail is not None
    assert detail.parent is None

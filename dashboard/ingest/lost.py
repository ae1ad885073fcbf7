"""Workers whose heartbeats stopped, and their tasks: the alert checks decide when, this writes.

A worker is gone only when its own heartbeats (``tasktrail.heartbeat``) stopped without a goodbye;
an unanswered broadcast is never evidence. Only then are its STARTED tasks LOST (retryable), and
a later event of such a task (it finished after all) outranks LOST.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

from dashboard.models import TaskRun, TaskState, Worker


def mark_lost(
    worker: str,
    *,
    started_before: dt.datetime | None = None,
    keep: Collection[str] = (),
    only: Collection[str] | None = None,
) -> int:
    """The worker's STARTED tasks become LOST: all of them, or (a restart under the same name)
    those that started before ``started_before`` and are not in ``keep`` (still running), or
    (a goodbye that left tasks running) those in ``only``."""
    rows = TaskRun.objects.filter(worker=worker, state=TaskState.STARTED)
    if only is not None:
        rows = rows.filter(task_id__in=list(only))
    if started_before is not None:
        rows = rows.filter(started_at__lt=started_before)
    if keep:
        rows = rows.exclude(task_id__in=list(keep))
    return rows.update(state=TaskState.LOST)


def mark_gone(silent_since: dt.datetime, now: dt.datetime) -> list[str]:
    """Online workers whose last heartbeat came before ``silent_since`` become gone; returns
    their hostnames. Each row is changed only if no heartbeat arrived meanwhile."""
    gone = []
    stale = Worker.objects.filter(status=Worker.Status.ONLINE, last_heartbeat_at__lt=silent_since)
    for pk, hostname, last in stale.values_list("pk", "hostname", "last_heartbeat_at"):
        changed = Worker.objects.filter(
            pk=pk, status=Worker.Status.ONLINE, last_heartbeat_at=last
        ).update(status=Worker.Status.GONE, gone_at=now)
        if changed:
            gone.append(hostname)
    return gone


def gone_workers() -> dict[str, dt.datetime]:
    """Hostname -> last heartbeat of every worker that is gone."""
    return dict(
        Worker.objects.filter(status=Worker.Status.GONE).values_list(
            "hostname", "last_heartbeat_at"
        )
    )

"""``python -m bench.bulk_actions``: what one bulk retry of N failed tasks costs the web process.

Each round creates N FAILURE rows of a registered task (``workers.tasks.send_invoice``, recorded
arguments) on ``DATABASE_URL``, then calls ``task_runs_bulk(kind="retry")`` on their ids once, as
the bulk view does, and reports its wall time, its SQL statements (the after-commit Celery calls
and outcome writes included: they run when the action's transaction commits, inside the call) and
the messages published to the broker (``REDIS_URL``). The figure reported is the median over the
rounds.

The rows carry a queue of the run's own, so the retries land there; the recorder writes to a
stream of the run's own. Rows, audit rows, the user, the queue and the stream are deleted again,
also after a failure.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

TASK_NAME: Final = "workers.tasks.send_invoice"


@dataclass(frozen=True)
class Measurement:
    tasks: int
    ms: float
    statements: int
    by_verb: dict[str, int]
    publishes: int
    queued: int


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.bulk_actions", description=__doc__)
    parser.add_argument("--tasks", type=int, default=1000, help="Failed tasks per bulk retry.")
    parser.add_argument("--rounds", type=int, default=3, help="Rounds; the median is reported.")
    options = parser.parse_args(argv)
    if options.tasks < 1 or options.rounds < 1:
        parser.error("--tasks and --rounds: positive")
    return options


def create_failed(prefix: str, queue: str, count: int) -> list[str]:
    from django.utils import timezone

    from dashboard.models import TaskRun, TaskState

    now = timezone.now()
    ids = [f"{prefix}{n}" for n in range(count)]
    TaskRun.objects.bulk_create(
        [
            TaskRun(
                task_id=task_id,
                name=TASK_NAME,
                queue=queue,
                state=TaskState.FAILURE,
                args=f"[{n}]",
                kwargs='{"email": "bench@example.com"}',
                first_seen_at=now,
                updated_at=now,
                exc_type="ValueError",
                exc_message="bench",
            )
            for n, task_id in enumerate(ids)
        ],
        batch_size=500,
    )
    return ids


def measure(user: Any, ids: list[str], queue: str, client: Any) -> Measurement:
    from celery import signals
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from dashboard.services import task_runs_bulk

    published: list[str] = []

    def count_publish(sender: Any = None, **_: Any) -> None:
        published.append(str(sender))

    # Django keeps the last 9000 statements only; a bulk action may run more than that.
    connection.queries_log = deque(maxlen=None)
    signals.before_task_publish.connect(count_publish, weak=False)
    try:
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            result = task_runs_bulk(user=user, kind="retry", reason="bench", task_ids=ids)
            elapsed = time.perf_counter() - started
    finally:
        signals.before_task_publish.disconnect(count_publish)
    if len(result.done) != len(ids) or result.action.outcome != "done":
        raise RuntimeError(f"bulk retry did not retry every task: {result.action.message}")
    verbs = Counter(q["sql"].split(None, 1)[0].upper() for q in captured.captured_queries)
    return Measurement(
        tasks=len(ids),
        ms=elapsed * 1000,
        statements=len(captured.captured_queries),
        by_verb=dict(sorted(verbs.items())),
        publishes=len(published),
        queued=int(client.llen(queue)),
    )


def delete_rows(prefix: str, username: str) -> None:
    """The rows of a round (task rows, the user's audit rows)."""
    from dashboard.models import OperatorAction, OperatorActionTarget, TaskRun

    TaskRun.objects.filter(task_id__startswith=prefix).delete()
    OperatorActionTarget.objects.filter(action__username=username).delete()
    OperatorAction.objects.filter(username=username).delete()


def main(argv: list[str]) -> int:
    options = parse_args(argv)
    run_id = secrets.token_hex(3)
    # Before Django starts: the recorder reads its stream name from the settings.
    os.environ["TASKTRAIL_STREAM"] = f"bench:{run_id}:events"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    os.environ.setdefault("TASKTRAIL_EMBEDDED_REDIS", "1")  # used only without REDIS_URL
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command
    from django.db import connection

    from bench import database
    from bench.context import Bench
    from bench.machine import safe_url
    from tasktrail import recorder

    call_command("migrate", interactive=False, verbosity=0)
    log_dir = Path(__file__).resolve().parent / "results" / "logs"
    bench = Bench(settings.REDIS_URL, settings.DATABASE_URL, log_dir, run_id=run_id)
    bench.stream("events")
    username = f"bench-{run_id}"
    results: list[Measurement] = []
    try:
        user = User.objects.create_user(username)
        user.groups.add(Group.objects.get(name="admin"))
        user = User.objects.get(pk=user.pk)
        for round_no in range(1, options.rounds + 1):
            queue = bench.queue("bulk", round_no)
            prefix = bench.task_prefix("bulk", round_no)
            ids = create_failed(prefix, queue, options.tasks)
            database.vacuum()
            result = measure(user, ids, queue, bench.client)
            results.append(result)
            print(
                f"round {round_no}: {result.ms:.0f} ms, {result.statements} statements "
                f"{result.by_verb}, {result.publishes} published, {result.queued} queued",
                file=sys.stderr,
            )
            delete_rows(prefix, username)
    finally:
        recorder.flush()
        delete_rows(f"bench-{run_id}-", username)
        User.objects.filter(username=username).delete()
        bench.close()
    print(
        f"bulk retry of {options.tasks} tasks on {connection.vendor} "
        f"({safe_url(settings.DATABASE_URL)}), broker {safe_url(settings.REDIS_URL)}: "
        f"median {statistics.median(r.ms for r in results):.0f} ms "
        f"(runs {', '.join(f'{r.ms:.0f}' for r in results)}), "
        f"{statistics.median(r.statements for r in results):.0f} SQL statements "
        f"(last round {results[-1].by_verb}), "
        f"{statistics.median(r.publishes for r in results):.0f} publishes"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

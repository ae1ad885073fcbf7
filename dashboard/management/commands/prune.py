"""``manage.py prune`` (``tasktrail prune``): one retention pass now, as the monitor runs them.

``--dry-run`` counts what a pass would remove, per table, with the cutoffs, and changes nothing.
Only one pass runs at a time (a lease in the stream's Redis): while another holds it this refuses,
or with ``--wait`` waits for it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from dashboard.cli import NO_STREAM_MESSAGE
from dashboard.retention.policy import RetentionPolicy
from dashboard.retention.pruner import DEFAULT_BATCH_SIZE, PruneReport
from dashboard.retention.runner import LeaseHeld, run_pass

DEFAULT_WAIT_SECONDS = 600.0


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise CommandError(f"not a whole number: {value!r}") from None
    if number < 1:
        raise CommandError(f"must be at least 1, got {number}")
    return number


def _seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise CommandError(f"not a number of seconds: {value!r}") from None
    if not 0 <= number < 1e9:
        raise CommandError(f"must be a number of seconds >= 0, got {value!r}")
    return number


class Command(BaseCommand):
    help = "Remove task history, audit rows and resolved incidents older than the retention."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would go; change nothing."
        )
        parser.add_argument(
            "--wait",
            nargs="?",
            type=_seconds,
            const=DEFAULT_WAIT_SECONDS,
            default=0.0,
            metavar="SECONDS",
            help="If another pass is running, wait for it (default %(const)s seconds) "
            "instead of refusing.",
        )
        parser.add_argument(
            "--batch",
            type=_positive_int,
            default=DEFAULT_BATCH_SIZE,
            help="Rows per delete transaction (default %(default)s).",
        )
        parser.add_argument(
            "--max-seconds",
            type=_seconds,
            default=0.0,
            help="Stop after this long (0, the default: run until nothing old is left).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.REDIS_URL:
            raise CommandError(f"prune: {NO_STREAM_MESSAGE}")
        client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=10, socket_connect_timeout=5
        )
        policy = RetentionPolicy.from_settings()
        dry = options["dry_run"]
        try:
            report = run_pass(
                client,
                policy=policy,
                dry_run=dry,
                wait=options["wait"],
                pass_seconds=options["max_seconds"],
                batch_size=options["batch"],
                next_run_at=None,
                on_wait=lambda holder: self.stdout.write(
                    f"prune: another retention pass is running (lease held by {holder or '?'}); "
                    f"waiting up to {options['wait']:g}s",
                ),
            )
        except LeaseHeld as held:
            raise CommandError(
                f"prune: {held}; try again later, or use --wait to wait for it"
            ) from None
        except redis.RedisError as exc:
            raise CommandError(f"prune: the stream's Redis cannot be reached ({exc})") from None
        self._print(report, policy)
        if report.errors:
            raise CommandError("prune: " + "; ".join(report.errors))

    def _print(self, report: PruneReport, policy: RetentionPolicy) -> None:
        cut = report.cutoffs

        def when(value: dt.datetime | None, days: float) -> str:
            if value is None:
                return "kept forever (0 days)"
            return f"before {timezone.localtime(value):%Y-%m-%d %H:%M:%S %Z} ({days:g} days)"

        self.stdout.write("Cutoffs:")
        self.stdout.write(
            f"  finished tasks (SUCCESS)   {when(cut.finished, policy.finished_days)}"
        )
        self.stdout.write(
            f"  failed tasks (FAILURE, REVOKED, REJECTED, LOST)  "
            f"{when(cut.failed, policy.failed_days)}"
        )
        self.stdout.write(
            f"  never finished             {when(cut.unfinished, policy.unfinished_days)}"
        )
        self.stdout.write(f"  audit, resolved incidents  {when(cut.audit, policy.audit_days)}")
        self.stdout.write("Would remove:" if report.dry_run else "Removed:")
        for table, count in report.removed.items():
            more = "more than " if report.capped.get(table) else ""
            self.stdout.write(f"  {table:<22} {more}{count:,}")
        if not report.complete and report.stopped:
            self.stdout.write(
                f"Stopped early ({report.stopped}) after {report.duration_seconds:.1f}s; "
                "run again to go on."
            )
        else:
            self.stdout.write(f"Took {report.duration_seconds:.1f}s.")

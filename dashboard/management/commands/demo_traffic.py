"""``manage.py demo_traffic``: publish a realistic mix of the demo tasks (see ``dashboard.demo``).

Runs until SIGTERM / Ctrl-C, or until ``--count`` tasks are published. Prints one line per
publication: the task name(s), the business id(s) and the task id(s).
"""

from __future__ import annotations

import random
import signal
import threading
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dashboard.demo import TrafficMix, publish

MAX_PUBLISH_FAILURES = 5


SUMMARY_SECONDS = 30.0


class Command(BaseCommand):
    help = "Publish demo tasks (invoices, inventory, shipments, payments, a rare hung report)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--count", type=int, default=0, help="Publish this many, then exit (default: forever)."
        )
        parser.add_argument(
            "--rate",
            type=float,
            default=2.0,
            help="Publications per second on average (default 2).",
        )
        parser.add_argument("--seed", type=int, default=None, help="Seed for a repeatable mix.")

    def handle(self, *args: Any, **options: Any) -> None:
        count: int = options["count"]
        rate: float = options["rate"]
        if count < 0:
            raise CommandError("--count must be 0 (forever) or more")
        if rate <= 0:
            raise CommandError("--rate must be above 0")

        # Configures the tasks' Celery app from the settings and installs the recorder, so the
        # published events reach the stream.
        from tasktrail import recorder
        from workers import celery_app  # noqa: F401

        stopping = threading.Event()

        def stop(signum: int, frame: Any) -> None:
            stopping.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

        mix = TrafficMix(random.Random(options["seed"]))
        pace = random.Random()  # arrival times need not repeat with --seed
        published = failures = 0
        # One line per publication with -v 2; otherwise a line every SUMMARY_SECONDS with one
        # example (the first 8 characters of its ids find it in the search), so the log stays quiet.
        every_one = options["verbosity"] >= 2
        since_summary, summary_at = 0, time.monotonic()
        try:
            while not stopping.is_set() and (not count or published < count):
                publication = mix.next()
                try:
                    task_ids = publish(publication)
                except Exception as exc:  # the broker is away: say so, retry a few times
                    failures += 1
                    self.stderr.write(f"could not publish {publication.describe()}: {exc!r}")
                    if failures >= MAX_PUBLISH_FAILURES:
                        raise CommandError(f"{failures} publications failed in a row") from exc
                    stopping.wait(2.0)
                    continue
                failures = 0
                published += 1
                since_summary += 1
                ids = ",".join(task_id[:8] for task_id in task_ids)
                if every_one or time.monotonic() - summary_at >= SUMMARY_SECONDS:
                    line = f"{publication.describe()}  [{ids}]"
                    if not every_one:
                        line = f"{since_summary} publications since the last line; latest: {line}"
                    self.stdout.write(line)
                    self.stdout.flush()
                    since_summary, summary_at = 0, time.monotonic()
                if not count or published < count:
                    # Poisson arrivals, with the gap capped so the stream never looks stalled.
                    stopping.wait(min(pace.expovariate(rate), 5.0 / rate))
        finally:
            recorder.flush()
        self.stdout.write(f"published {published} demo task(s)")

"""``manage.py monitor``: the only writer of task rows. Runs until SIGTERM / Ctrl-C.

``--drain`` processes what the stream holds and exits (tests, scripts, a one-off catch-up).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from typing import Any

import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import InterfaceError, OperationalError, connection

from dashboard.alerts.checks import BackgroundProbe, WorkerProbe
from dashboard.alerts.runner import CheckRunner
from dashboard.ingest.monitor import Monitor
from dashboard.ingest.stream import StreamConsumer
from tracing.setup import setup as setup_tracing

logger = logging.getLogger("tasktrail.alerts")


class Command(BaseCommand):
    help = "Read the tasktrail event stream and write task rows."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--drain", action="store_true", help="Exit once the stream is empty.")
        parser.add_argument("--consumer", default="", help="Consumer name (default: host-pid).")
        parser.add_argument("--batch", type=int, default=200, help="Stream entries per batch.")
        parser.add_argument(
            "--no-alerts",
            action="store_true",
            help="Do not check queues nor send alert mail (they are off with --drain too).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        setup_tracing("monitor")  # OTEL_* variables; nothing when tracing is off
        client = redis.Redis.from_url(
            settings.REDIS_URL,
            socket_timeout=10,
            socket_connect_timeout=5,
            health_check_interval=30,
        )
        consumer = StreamConsumer(client, settings.TASKTRAIL_STREAM, consumer=options["consumer"])
        alerts = None if options["drain"] or options["no_alerts"] else start_alerts(client)
        periodic = [] if alerts is None else [(settings.TASKTRAIL_ALERT_CHECK_SECONDS, alerts[0])]
        monitor = Monitor(consumer, batch_entries=options["batch"], periodic=periodic)

        def stop(signum: int, frame: Any) -> None:
            self.stderr.write("monitor: stopping after the batch in hand")
            monitor.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        if not options["drain"]:
            self.stdout.write(f"monitor {consumer.consumer}: reading {consumer.stream}")
        try:
            stats = monitor.run(drain=options["drain"])
        finally:
            if alerts is not None:
                alerts[1].stop()
        self.stdout.write(
            f"monitor: {stats.events} events from {stats.entries} entries written, "
            f"{stats.rejected} rejected"
        )


def start_alerts(client: redis.Redis) -> tuple[Callable[[], None], BackgroundProbe] | None:
    """The alert check for the monitor's loop, and the thread that asks the workers for their
    queues (a broadcast that waits for replies: kept out of the loop)."""
    every = float(settings.TASKTRAIL_ALERT_CHECK_SECONDS)
    if every <= 0:
        return None
    probe = BackgroundProbe(WorkerProbe(), every=every).start()
    runner = CheckRunner(client=client, probe=probe, check_seconds=every)

    def alert_checks() -> None:
        try:
            runner.run_once()
        except (OperationalError, InterfaceError, redis.ConnectionError, redis.TimeoutError) as exc:
            # Down, not broken: one line, not a traceback every cycle; ingestion says the rest.
            logger.warning("alert checks skipped: %s", (str(exc).splitlines() or [repr(exc)])[0])
            connection.close()

    return alert_checks, probe

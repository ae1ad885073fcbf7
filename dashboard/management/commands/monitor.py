"""``manage.py monitor``: the only writer of task rows. Runs until SIGTERM / Ctrl-C.

The alert checks and the alert mail run in threads of their own beside the ingest loop
(``dashboard.alerts.threads``), and so does the retention pruning (``dashboard.retention.runner``),
started here and stopped once the loop has returned.

``--drain`` processes what the stream holds and exits (tests, scripts, a one-off catch-up).

Without the stream's URL (``TASKTRAIL_RECORDER_URL`` or ``REDIS_URL``) it refuses to start.
"""

from __future__ import annotations

import signal
from typing import Any

import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from dashboard.alerts.threads import start_alerts
from dashboard.cli import NO_STREAM_MESSAGE
from dashboard.ingest.monitor import Monitor
from dashboard.ingest.stream import StreamConsumer
from dashboard.retention.runner import start_pruning
from tasktrail.tracing.setup import setup as setup_tracing


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
        parser.add_argument(
            "--no-prune",
            action="store_true",
            help="Do not remove old history here (off with --drain too; see `manage.py prune`).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.REDIS_URL:
            raise CommandError(f"monitor: {NO_STREAM_MESSAGE}")
        setup_tracing("monitor")  # OTEL_* variables; nothing when tracing is off
        client = redis.Redis.from_url(
            settings.REDIS_URL,
            socket_timeout=10,
            socket_connect_timeout=5,
            health_check_interval=30,
        )
        consumer = StreamConsumer(client, settings.TASKTRAIL_STREAM, consumer=options["consumer"])
        monitor = Monitor(consumer, batch_entries=options["batch"])

        def stop(signum: int, frame: Any) -> None:
            self.stderr.write("monitor: stopping after the batch in hand")
            monitor.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        if not options["drain"]:
            self.stdout.write(f"monitor {consumer.consumer}: reading {consumer.stream}")
        alerts = None if options["drain"] or options["no_alerts"] else start_alerts(client)
        pruning = None if options["drain"] or options["no_prune"] else start_pruning(client)
        try:
            stats = monitor.run(drain=options["drain"])
        finally:
            if alerts is not None:
                alerts.stop()
            if pruning is not None:
                pruning.stop()
        self.stdout.write(
            f"monitor: {stats.events} events from {stats.entries} entries written, "
            f"{stats.rejected} rejected"
        )

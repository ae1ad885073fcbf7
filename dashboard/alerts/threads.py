"""The alert checks and the alert mail, each in a daemon thread of the monitor process.

They run beside the ingest loop, never inside it, and apart from each other: a mail server that
accepts a connection and never answers holds a send for up to ``EMAIL_TIMEOUT``, which then delays
only mail, not the rows nor incident detection nor the snapshot the pages read.

Django's database connection is per thread: each thread opens its own, lets Django replace it at
the start of every cycle when it is broken or older than ``CONN_MAX_AGE`` (as a request would),
closes it after a failed cycle, and closes it when the thread ends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, connection

from dashboard.alerts.incidents import Sender
from dashboard.alerts.mail import send_notice
from dashboard.alerts.runner import CheckRunner, MailRunner
from dashboard.alerts.worker_probe import HeartbeatProbe, Probe

logger = logging.getLogger("tasktrail.alerts")

STOP_SECONDS = 5.0  # how long stopping waits for a cycle in hand (a send may block much longer)

# Down, not broken: one line per cycle, not a traceback; ingestion says the rest.
UNAVAILABLE = (OperationalError, InterfaceError, redis.ConnectionError, redis.TimeoutError)


class Repeating:
    """Runs ``job`` in a daemon thread, then again ``every`` seconds after it ends (sooner when
    woken). A failing cycle is logged and the next one runs as usual."""

    def __init__(self, name: str, job: Callable[[], object], every: float) -> None:
        self.name = name
        self.job = job
        self.every = every
        self.cycles = 0  # cycles ended, failed ones included
        self._stopping = False
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"tasktrail-{name}", daemon=True)

    def start(self) -> Repeating:
        self._thread.start()
        return self

    def wake(self) -> None:
        """Run the next cycle now rather than at its time (or right after the one in hand)."""
        self._wake.set()

    def stop(self) -> None:
        """Ask the thread to end after the cycle in hand; ``join`` waits for it."""
        self._stopping = True
        self._wake.set()

    @property
    def stopping(self) -> bool:
        """Stop was asked: a long job asks this to end early."""
        return self._stopping

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            while not self._stopping:
                self._wake.clear()
                self._cycle()
                self.cycles += 1
                if not self._stopping:
                    self._wake.wait(self.every)
        finally:
            connection.close()  # this thread's own connection

    def _cycle(self) -> None:
        try:
            close_old_connections()
            self.job()
        except UNAVAILABLE as exc:
            logger.warning("%s skipped: %s", self.name, (str(exc).splitlines() or [repr(exc)])[0])
            connection.close()
        except Exception:
            logger.exception("%s failed", self.name)
            connection.close()


@dataclass
class AlertThreads:
    """The threads the monitor command starts, and stops on SIGTERM."""

    checks: Repeating
    mail: Repeating

    def stop(self, timeout: float = STOP_SECONDS) -> bool:
        """Ask every thread to end, then wait at most ``timeout`` seconds in all; True if they did.
        A thread still in a cycle (a send waiting on the mail server) is left to end with the
        process: its lease on the incident lets another monitor send the notice later."""
        deadline = time.monotonic() + timeout
        self.checks.stop()
        self.mail.stop()
        stopped = True
        for thread in (self.checks, self.mail):
            if not thread.join(max(0.0, deadline - time.monotonic())):
                logger.warning(
                    "alert %s still in a cycle; leaving it to the process exit", thread.name
                )
                stopped = False
        return stopped


def start_alerts(
    client: redis.Redis,
    *,
    every: float | None = None,
    probe: Probe | None = None,
    send: Sender = send_notice,
) -> AlertThreads | None:
    """Start the check and mail threads; None when ``TASKTRAIL_ALERT_CHECK_SECONDS`` is 0.

    ``probe`` says which workers are alive and what they consume; by default the rows their
    heartbeats keep (a database read, no broadcast)."""
    every = float(settings.TASKTRAIL_ALERT_CHECK_SECONDS if every is None else every)
    if every <= 0:
        return None
    runner = CheckRunner(client=client, probe=probe or HeartbeatProbe(), check_seconds=every)
    mail = Repeating("mail", MailRunner(send=send).run_once, every)

    def check() -> None:
        report = runner.run_once()
        if report.sync.opened or report.sync.resolved:
            mail.wake()  # their notices go out now, not a cycle later

    checks = Repeating("checks", check, every)
    mail.start()
    checks.start()
    return AlertThreads(checks=checks, mail=mail)

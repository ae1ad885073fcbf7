"""Which workers answer, and the queues each consumes.

Celery's remote control (``inspect().active_queues()``) costs a broadcast and a wait for replies,
so in the monitor it runs in a background thread (``BackgroundProbe``) and the check reads the
latest answer; a stale or failed answer counts as "unknown", which never fires and never resolves
anything.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger("tasktrail.alerts")


@dataclass(frozen=True)
class WorkersSeen:
    """The workers that answered, and the queues each consumes."""

    at: float
    queues: Mapping[str, tuple[str, ...]]

    def consumers(self, queue: str) -> int:
        return sum(1 for names in self.queues.values() if queue in names)


Probe = Callable[[], WorkersSeen | None]


class WorkerProbe:
    """Ask the workers, now (a broadcast, then ``timeout`` seconds of waiting for replies)."""

    def __init__(self, app: Any = None, timeout: float = 1.0) -> None:
        self.app = app
        self.timeout = timeout

    def __call__(self) -> WorkersSeen | None:
        app = self.app
        if app is None:
            # The shop's broker (TASKTRAIL_BROKER_URL), where its workers listen: asking the
            # stream's Redis instead would find no worker of a shop on RabbitMQ, and call it gone.
            from workers.control import control_app

            app = control_app()
        try:
            replies = app.control.inspect(timeout=self.timeout).active_queues() or {}
        except Exception as exc:  # broker away: unknown, not "no workers"
            logger.warning("could not ask the workers for their queues: %s", exc)
            return None
        return WorkersSeen(
            at=time.time(),
            queues={
                str(host): tuple(str(q.get("name")) for q in queues or [] if isinstance(q, dict))
                for host, queues in replies.items()
            },
        )


class BackgroundProbe:
    """Runs a probe every ``every`` seconds in a daemon thread; calling it returns the latest
    answer, or None when there is none younger than ``3 * every + 5`` s (the probe is stuck)."""

    def __init__(self, probe: Probe, every: float) -> None:
        self.probe = probe
        self.every = every
        self._latest: WorkersSeen | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tasktrail-probe", daemon=True)

    def start(self) -> BackgroundProbe:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            answer = self.probe()
            if answer is not None:
                self._latest = answer
            self._stop.wait(self.every)

    def __call__(self) -> WorkersSeen | None:
        latest = self._latest
        if latest is None or time.time() - latest.at > 3 * self.every + 5:
            return None
        return latest

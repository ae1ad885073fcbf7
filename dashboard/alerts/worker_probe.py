"""Which workers are alive, and the queues each consumes: read from their heartbeats.

Each worker's main process adds a heartbeat to the stream every few seconds
(``tasktrail.heartbeat``) and the monitor keeps one ``Worker`` row per worker from them, with the
queues it consumes now. The alert checks read the rows that are online: no broadcast, no waiting
for replies, and a worker busy with a long task (which leaves a broadcast unanswered) still counts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from dashboard.models import Worker


@dataclass(frozen=True)
class WorkersSeen:
    """The workers alive, and the queues each consumes."""

    at: float
    queues: Mapping[str, tuple[str, ...]]

    def consumers(self, queue: str) -> int:
        return sum(1 for names in self.queues.values() if queue in names)


Probe = Callable[[], WorkersSeen | None]


class HeartbeatProbe:
    """The workers whose rows say online (heartbeats coming, no goodbye, not gone)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock

    def __call__(self) -> WorkersSeen | None:
        """No row online: no consumer (workers must run a client that sends heartbeats)."""
        rows = Worker.objects.filter(status=Worker.Status.ONLINE).values_list("hostname", "queues")
        return WorkersSeen(
            at=self.clock(),
            queues={
                host: tuple(str(q) for q in queues) if isinstance(queues, list) else ()
                for host, queues in rows
            },
        )

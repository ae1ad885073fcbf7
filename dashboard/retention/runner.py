"""One retention pass under the lease, its figures kept in Redis for the Retention page, and the
monitor's thread that runs a pass every ``TASKTRAIL_PRUNE_EVERY_SECONDS``."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from typing import Any, Final

import redis
from django.conf import settings
from django.utils import timezone

from dashboard import redis_keys
from dashboard.alerts.threads import STOP_SECONDS, Repeating
from dashboard.retention.lease import Lease
from dashboard.retention.policy import RetentionPolicy
from dashboard.retention.pruner import DEFAULT_BATCH_SIZE, PruneReport, prune_pass

logger = logging.getLogger("tasktrail.retention")

LEASE_SECONDS: Final = 30.0  # renewed before every batch; a holder that dies frees it this soon
WAIT_POLL_SECONDS: Final = 1.0


class LeaseHeld(Exception):
    """Another process is running a pass."""

    def __init__(self, holder: str | None) -> None:
        super().__init__(f"another retention pass is running (lease held by {holder or '?'})")
        self.holder = holder


def lease_for(client: redis.Redis, stream: str | None = None) -> Lease:
    stream = stream or settings.TASKTRAIL_STREAM
    return Lease(client, redis_keys.prune_lease(stream), LEASE_SECONDS, WAIT_POLL_SECONDS)


def run_pass(
    client: redis.Redis,
    *,
    policy: RetentionPolicy | None = None,
    now: dt.datetime | None = None,
    dry_run: bool = False,
    wait: float = 0.0,
    pass_seconds: float | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    next_run_at: dt.datetime | None = None,
    stopping: Callable[[], bool] = lambda: False,
    on_wait: Callable[[str | None], object] | None = None,
) -> PruneReport:
    """Take the lease (waiting up to ``wait`` seconds for it), run one pass, release it.

    Raises ``LeaseHeld`` when another pass holds the lease past ``wait`` (``on_wait`` is told
    when the wait begins). A real pass's figures go to Redis (``redis_keys.prune_last``) with
    ``next_run_at``. A dry run changes nothing, so it takes no lease and runs beside a pass."""
    policy = policy or RetentionPolicy.from_settings()
    lease = None if dry_run else lease_for(client)
    if lease is not None and not lease.acquire():
        if wait <= 0:
            raise LeaseHeld(lease.holder())
        if on_wait is not None:
            on_wait(lease.holder())  # "waiting for …"
        if not lease.acquire(wait):
            raise LeaseHeld(lease.holder())
    seconds = settings.TASKTRAIL_PRUNE_PASS_SECONDS if pass_seconds is None else pass_seconds
    deadline = time.monotonic() + seconds if seconds > 0 else None

    def keep_going() -> bool:
        if stopping():
            return False
        if lease is None:
            return True
        try:
            return lease.renew()
        except redis.RedisError:
            return False  # cannot tell whether it is still ours: stop, the next pass goes on

    try:
        report = prune_pass(
            policy,
            now=now or timezone.now(),
            batch_size=batch_size,
            dry_run=dry_run,
            deadline=deadline,
            keep_going=keep_going,
        )
    finally:
        try:
            if lease is not None:
                lease.release()
        except redis.RedisError:
            logger.warning("retention: could not release the lease; it expires by itself")
    if not dry_run:
        store_figures(client, report, next_run_at)
        logger.info(
            "retention: removed %s in %.1fs%s",
            ", ".join(f"{n} {t}" for t, n in report.removed.items() if n) or "nothing",
            report.duration_seconds,
            "" if report.complete else f" (stopped: {report.stopped or 'errors'})",
        )
    for error in report.errors:
        logger.warning("retention: %s", error)
    return report


def store_figures(
    client: redis.Redis, report: PruneReport, next_run_at: dt.datetime | None
) -> None:
    figures = report.as_dict()
    figures["next_run_at"] = next_run_at.isoformat() if next_run_at else None
    client.set(redis_keys.prune_last(settings.TASKTRAIL_STREAM), json.dumps(figures))


def last_figures(client: redis.Redis) -> dict[str, Any] | None:
    """The latest pass's figures as stored, or None (no pass yet, or unreadable)."""
    raw = client.get(redis_keys.prune_last(settings.TASKTRAIL_STREAM))
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class PruneThread:
    """The monitor's pruning: a pass every ``every`` seconds in a daemon thread of its own. A
    pass another monitor holds the lease for is skipped; stopping ends the pass at its next
    batch."""

    def __init__(self, client: redis.Redis, every: float) -> None:
        self.client = client
        self.every = every
        self.repeating = Repeating("prune", self._job, every)

    def _job(self) -> None:
        next_at = timezone.now() + dt.timedelta(seconds=self.every)
        try:
            run_pass(self.client, next_run_at=next_at, stopping=lambda: self.repeating.stopping)
        except LeaseHeld as held:
            logger.debug("retention: skipped, %s", held)

    def start(self) -> PruneThread:
        self.repeating.start()
        return self

    def stop(self, timeout: float = STOP_SECONDS) -> bool:
        self.repeating.stop()
        return self.repeating.join(timeout)


def start_pruning(client: redis.Redis, every: float | None = None) -> PruneThread | None:
    """None when ``TASKTRAIL_PRUNE_EVERY_SECONDS`` is 0."""
    every = float(settings.TASKTRAIL_PRUNE_EVERY_SECONDS if every is None else every)
    if every <= 0:
        return None
    return PruneThread(client, every).start()

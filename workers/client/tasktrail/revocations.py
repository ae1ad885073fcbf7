"""Cancellations that outlive the workers.

Celery keeps revoked task ids only in each worker's memory: a worker started (or restarted) after
the revoke would run the task. tasktrail also keeps each cancelled id in a Redis sorted set (score:
when), and every worker merges that set into its own revoked list when it starts. Imports no Django.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import redis
from celery import Celery, signals

logger = logging.getLogger("tasktrail.revocations")

KEY = "tasktrail:revoked"
KEEP_SECONDS = 7 * 24 * 3600  # a message older than this would have expired on the broker anyway


def remember(client: redis.Redis, task_ids: Iterable[str], now: float | None = None) -> None:
    now = now or time.time()
    mapping = {task_id: now for task_id in task_ids}
    if not mapping:
        return
    pipe = client.pipeline(transaction=False)
    pipe.zadd(KEY, mapping)
    pipe.zremrangebyscore(KEY, "-inf", now - KEEP_SECONDS)
    pipe.execute()


def remembered(client: redis.Redis, now: float | None = None) -> list[str]:
    since = (now or time.time()) - KEEP_SECONDS
    members: list[Any] = list(client.zrangebyscore(KEY, since, "+inf"))
    return [m.decode() if isinstance(m, bytes) else str(m) for m in members]


def install(app: Celery, redis_url: str) -> None:
    """Make every worker of ``app`` skip the tasks cancelled before it started."""

    def load(sender: Any = None, **_: Any) -> None:
        from celery.worker import state

        try:
            ids = remembered(redis.Redis.from_url(redis_url, socket_timeout=5))
        except redis.RedisError as exc:
            logger.warning("tasktrail: could not load cancelled task ids: %s", exc)
            return
        state.merge_revoked(ids) if hasattr(state, "merge_revoked") else state.revoked.update(ids)
        logger.info("tasktrail: %d cancelled task ids loaded", len(ids))

    signals.worker_init.connect(load, weak=False, dispatch_uid="tasktrail.revocations.load")

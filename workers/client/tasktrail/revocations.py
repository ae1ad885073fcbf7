"""Cancellations that outlive the workers.

Celery keeps revoked task ids only in each worker's memory: a worker started (or restarted) after
the revoke would run the task. tasktrail also keeps each cancelled id in a Redis sorted set (score:
when), and every worker merges that set into its own revoked list when it starts. Imports no Django.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis
from celery import Celery, signals

from tasktrail.config import ClientConfig, masked

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


def install(app: Celery, config: Callable[[], ClientConfig | None]) -> None:
    """Make every worker of ``app`` skip the tasks cancelled before it started.

    ``config()`` gives the client's configuration (None: recording is off, nothing to load): the set
    lives in the Redis of the event stream, where the dashboard writes it.
    """

    def load(sender: Any = None, **_: Any) -> None:
        try:
            _load(config)
        except Exception:  # never stop a worker from starting
            logger.exception("tasktrail: loading cancelled task ids failed (ignored)")

    signals.worker_init.connect(load, weak=False, dispatch_uid="tasktrail.revocations.load")


def _load(config: Callable[[], ClientConfig | None]) -> None:
    from celery.worker import state

    resolved = config()
    if resolved is None:
        return
    client = redis.Redis.from_url(resolved.recorder_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        ids = remembered(client)
    except redis.RedisError as exc:
        logger.warning(
            "tasktrail: could not load cancelled task ids from %s: %s",
            masked(resolved.recorder_url),
            exc,
        )
        return
    finally:
        client.close()
    state.merge_revoked(ids) if hasattr(state, "merge_revoked") else state.revoked.update(ids)
    logger.info("tasktrail: %d cancelled task ids loaded", len(ids))

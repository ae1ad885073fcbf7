"""A lease in Redis so that one process prunes at a time: redis-py's ``Lock`` (SET NX PX with a
token; renewal and release only while the key still holds that token), so a holder whose lease
expired never extends nor releases the next holder's. The token names the holder
(host-pid-random) for the message of a pass that is refused.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket

import redis
from redis.exceptions import LockError


class Lease:
    def __init__(
        self, client: redis.Redis, key: str, ttl_seconds: float = 30.0, poll_seconds: float = 1.0
    ) -> None:
        self.client = client
        self.key = key
        # random part: two holders never share a token
        self.token = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(8)}"
        self._lock = client.lock(
            key, timeout=max(0.001, ttl_seconds), sleep=poll_seconds, thread_local=False
        )
        self.held = False

    def acquire(self, wait: float = 0.0) -> bool:
        """Take the lease, waiting up to ``wait`` seconds while another holds it."""
        self.held = self._lock.acquire(
            blocking=wait > 0, blocking_timeout=wait or None, token=self.token
        )
        return self.held

    def renew(self) -> bool:
        """Extend the lease; False when it is no longer ours (it expired, someone else has it)."""
        if not self.held:
            return False
        try:
            self._lock.reacquire()
        except LockError:  # LockNotOwnedError: it expired, maybe someone else took it
            self.held = False
        return self.held

    def release(self) -> None:
        if self.held:
            self.held = False
            with contextlib.suppress(LockError):  # no longer ours: the next holder's key stays
                self._lock.release()

    def holder(self) -> str | None:
        """The token of whoever holds the lease now (host-pid-random), or None."""
        value = self.client.get(self.key)
        if value is None:
            return None
        return value.decode(errors="replace") if isinstance(value, bytes) else str(value)

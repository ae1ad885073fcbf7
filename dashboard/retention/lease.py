"""A lease in Redis so that one process prunes at a time.

``SET key token NX PX ttl`` takes it; the holder renews it between batches and deletes it at the
end, both only while the key still holds its own token (a Lua script: read and act in one step), so
a holder whose lease expired never extends nor releases the next holder's.
"""

from __future__ import annotations

import os
import secrets
import socket
from typing import Final

import redis

_RENEW: Final = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE: Final = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class Lease:
    def __init__(self, client: redis.Redis, key: str, ttl_seconds: float = 30.0) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = max(1, int(ttl_seconds * 1000))
        # who holds it, for the refusal message; random part: two holders never share a token
        self.token = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(8)}"
        self.held = False

    def acquire(self) -> bool:
        self.held = bool(self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))
        return self.held

    def renew(self) -> bool:
        """Extend the lease; False when it is no longer ours (it expired, someone else has it)."""
        if not self.held:
            return False
        self.held = bool(self.client.eval(_RENEW, 1, self.key, self.token, self.ttl_ms))
        return self.held

    def release(self) -> None:
        if self.held:
            self.client.eval(_RELEASE, 1, self.key, self.token)
            self.held = False

    def holder(self) -> str | None:
        """The token of whoever holds the lease now (host-pid-random), or None."""
        value = self.client.get(self.key)
        if value is None:
            return None
        return value.decode(errors="replace") if isinstance(value, bytes) else str(value)

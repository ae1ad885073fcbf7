"""Subprocesses the benchmarks start (workers, monitors, publishers), always stopped again.

Each child runs in a session of its own, so a Ctrl-C in the terminal reaches only the driver, which
then stops its children through ``Processes.stop_all`` (called from a ``finally``). Output goes to a
log file per child; its tail is shown when something fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from socketserver import BaseServer
from types import FrameType
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
_PROC = Path("/proc")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class ChildFailed(RuntimeError):
    pass


def serve_until_terminated(server: BaseServer) -> None:
    """In a child server (``bench.otlp_sink``, ``bench.wsgi_server``): serve until SIGTERM, which
    ``Process.stop`` sends, or Ctrl-C; then close the socket."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the child and its descendants so far (Linux; else None)."""
        return tree_cpu_seconds(self.popen.pid)

    def wait(self, timeout: float) -> int:
        """Wait for the child to exit on its own; stop it and raise if it takes longer."""
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            self.stop()
            message = f"{self.name} still running after {timeout:.0f}s\n{self.tail()}"
            raise ChildFailed(message) from exc
        self._log.close()
        return code

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM the child itself (a Celery worker then shuts down warm: its pool processes
        flush their buffered events); SIGKILL its whole process group (the child is the group
        leader, so its pool processes are in it) if it does not exit in time."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                # Not reaped yet, so the group id is still ours.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
        self._log.close()
        return self.popen.returncode

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 40) -> str:
        text = self.output().splitlines()[-lines:]
        return f"--- last lines of {self.log_path} ---\n" + "\n".join(text)


@dataclass
class Processes:
    """Starts children and remembers them until they are stopped."""

    log_dir: Path
    _live: list[Process] = field(default_factory=list)
    _count: int = 0

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> Process:
        self._count += 1
        log_path = self.log_dir / f"{self._count:03d}-{name}.log"
        log = log_path.open("wb")
        popen = subprocess.Popen(
            list(argv),
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        process = Process(name, popen, log_path, log)
        self._live.append(process)
        return process

    def python(self, name: str, args: Sequence[str], env: Mapping[str, str]) -> Process:
        return self.start(name, [sys.executable, *args], env)

    def run_python(
        self, name: str, args: Sequence[str], env: Mapping[str, str], timeout: float
    ) -> str:
        """Run a Python child to completion and return its output; raise if it fails."""
        process = self.python(name, args, env)
        try:
            code = process.wait(timeout)
        finally:
            self.stop(process)  # interrupted while waiting: the child must not outlive us
        if code != 0:
            raise ChildFailed(f"{name} exited with {code}\n{process.tail()}")
        return process.output()

    def forget(self, process: Process) -> None:
        if process in self._live:
            self._live.remove(process)

    def stop(self, process: Process, timeout: float = 30.0) -> int | None:
        try:
            return process.stop(timeout)
        finally:
            self.forget(process)

    def stop_all(self) -> None:
        # Signal every child first, then wait, so a slow one does not hold the others up.
        for process in self._live:
            if process.running():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while self._live:
            process = self._live.pop()
            process.stop(max(1.0, deadline - time.monotonic()))


def tree_cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) used so far by ``pid`` and its live descendants, from /proc."""
    if not _PROC.is_dir():
        return None
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            stat = (_PROC / str(current) / "stat").read_text()
            # Fields after the parenthesised command name: utime and stime are the 12th and 13th.
            fields = stat.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
            for task in (_PROC / str(current) / "task").iterdir():
                children = (task / "children").read_text().split()
                pending.extend(int(child) for child in children)
        except (OSError, IndexError, ValueError):
            continue  # exited meanwhile
    return total

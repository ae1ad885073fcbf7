"""Child processes of the tests (workers, monitors), their output read as it comes.

A pipe holds 64 KiB: a child whose output is read only at the end blocks on a write once that much
waits unread, and the test then waits for a child that cannot go on. So a thread collects every
line from the start, and tests wait for a line with a deadline instead of sleeping.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]


class Output:
    """The lines a child writes, collected by a reader thread until the child closes its end."""

    def __init__(self, stream: IO[str]) -> None:
        self._lines: list[str] = []
        self._closed = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        try:
            for line in stream:
                with self._changed:
                    self._lines.append(line)
                    self._changed.notify_all()
        finally:
            with self._changed:
                self._closed = True
                self._changed.notify_all()

    @property
    def text(self) -> str:
        with self._changed:
            return "".join(self._lines)

    def tail(self, lines: int = 30) -> str:
        with self._changed:
            return "".join(self._lines[-lines:])

    def mark(self) -> int:
        """A position to wait from: ``wait_for(..., after=mark())`` sees only later lines."""
        with self._changed:
            return len(self._lines)

    def wait_for(self, needle: str, timeout: float, *, after: int = 0) -> str:
        """The first line from position ``after`` that holds ``needle``. Fails with the end of the
        output when ``timeout`` seconds pass or the child closes its output first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            seen = after
            while True:
                for line in self._lines[seen:]:
                    if needle in line:
                        return line
                seen = max(seen, len(self._lines))
                remaining = deadline - time.monotonic()
                if self._closed or remaining <= 0:
                    why = "output ended" if self._closed else f"timed out after {timeout:.0f}s"
                    raise AssertionError(
                        f"{why} waiting for a line with {needle!r}; last lines:\n"
                        + "".join(self._lines[-30:])
                    )
                self._changed.wait(remaining)

    def join(self, timeout: float) -> None:
        """Wait until everything the child wrote has been read (after it exited)."""
        self._reader.join(timeout)


@dataclass
class Child:
    process: subprocess.Popen[str]
    output: Output
    group: bool  # the child leads a process group of its own (signals go to all of it)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the child, wait for it (killing it after ``timeout``); its exit code."""
        process = self.process
        if process.poll() is None:
            self._signal(sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                process.wait(10)
        self.output.join(5)
        return process.returncode

    def _signal(self, sig: int) -> None:
        if self.group:
            os.killpg(self.process.pid, sig)
        else:
            self.process.send_signal(sig)


def spawn(command: Sequence[str], env: Mapping[str, str], *, group: bool = False) -> Child:
    """Start ``command`` in the project directory, stdout and stderr read as one stream.

    Unbuffered, so a line is there to wait for as soon as the child writes it."""
    process = subprocess.Popen(
        list(command),
        cwd=ROOT,
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=group,
    )
    assert process.stdout is not None
    return Child(process, Output(process.stdout), group)

"""Fixtures for installing tasktrail on apps of a test's own, as a shop does."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tasktrail import recorder


class LogRecords(logging.Handler):
    """Every record of the ``tasktrail`` loggers (they do not propagate to the root in the
    service's settings, so pytest's caplog would miss them)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def errors(self) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= logging.ERROR]

    def warnings(self) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno == logging.WARNING]

    @property
    def text(self) -> str:
        return "\n".join(r.getMessage() for r in self.records)


@pytest.fixture
def tasktrail_log() -> Iterator[LogRecords]:
    handler = LogRecords()
    logger = logging.getLogger("tasktrail")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
def not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process as if tasktrail were not installed yet (the demo app's installation is put
    back afterwards). The receivers stay connected: they follow the installation."""
    monkeypatch.setattr(recorder, "_installation", None)
    for name in ("TASKTRAIL_RECORDER_URL", "TASKTRAIL_STREAM", "TASKTRAIL_MAX_ARGS_BYTES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("TASKTRAIL_REDACT_KEYS", raising=False)

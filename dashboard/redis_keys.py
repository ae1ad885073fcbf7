"""Redis keys beside the event stream that the monitor writes and the pages read.

One place for their names, so the writer (``ingest``, ``alerts``) and the readers (``selectors``)
never import each other for a string. Every key starts with the stream's name, so one
``TASKTRAIL_STREAM`` per deployment keeps deployments apart on a shared Redis.
"""

from __future__ import annotations

from tasktrail.stream_writer import TRIMMED_KEY_SUFFIX


def monitors(stream: str) -> str:
    """Hash: monitor consumer name -> its latest heartbeat (JSON)."""
    return f"{stream}:monitors"


def alert_since(stream: str) -> str:
    """Hash: "condition:subject" -> when the condition started to hold."""
    return f"{stream}:alerts:since"


def alert_snapshot(stream: str) -> str:
    """String: the latest check's figures (JSON), which the pages and /metrics show."""
    return f"{stream}:alerts:snapshot"


def stream_trimmed(stream: str) -> str:
    """Hash the task processes write: ``entries`` dropped past the stream's length cap (in all),
    ``at`` the latest such trim, ``cap`` the cap they use. Named by the client, which writes it."""
    return stream + TRIMMED_KEY_SUFFIX


def overview_figures(stream: str) -> str:
    """String: the overview's figures (JSON) as the monitor's latest check counted them."""
    return f"{stream}:overview"


def prune_lease(stream: str) -> str:
    """String: the token of the process running a retention pass (expires unless renewed)."""
    return f"{stream}:retention:lease"


def prune_last(stream: str) -> str:
    """String: the latest retention pass's figures and the next one's time (JSON), for the page."""
    return f"{stream}:retention:last"

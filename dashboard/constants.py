"""Names that the models, the merge rules and the alert rules share.

A module of its own so that ``models.py`` imports nothing from ``ingest/`` or ``alerts/``: those
packages import the models, never the other way round.
"""

from __future__ import annotations

from typing import Final

# -- task states ---------------------------------------------------------------------------------

PENDING: Final = "PENDING"
RECEIVED: Final = "RECEIVED"
STARTED: Final = "STARTED"
RETRY: Final = "RETRY"
SUCCESS: Final = "SUCCESS"
FAILURE: Final = "FAILURE"
REVOKED: Final = "REVOKED"
REJECTED: Final = "REJECTED"
TERMINAL_STATES: Final = (SUCCESS, FAILURE, REVOKED, REJECTED)
# Set by the monitor when a worker's heartbeats stopped (no goodbye) while it ran the task, or
# its restart or goodbye no longer listed it; never by an event.
# The row's state_key is left as it was, so any later event of the task outranks it.
LOST: Final = "LOST"

NO_KEY: Final = -1  # the merge key of a column group no event has filled yet
# Identity keys (dashboard.ingest.merge.identity_key): bit 61 is 0 for a publish, then the receive
# time in ms since 2000 (41 bits, to 2069), then 20 bits of a hash of the value. Conflict keys at
# and above STATE_CONFLICT_BASE are outranked terminal states, which carry no time.
IDENTITY_EPOCH_MS: Final = 946_684_800_000
IDENTITY_MS_BITS: Final = 41
IDENTITY_HASH_BITS: Final = 20
STATE_CONFLICT_BASE: Final = 1 << 62

# -- alert rules ---------------------------------------------------------------------------------

QUEUE_STUCK: Final = "queue_stuck"
TASK_OVERDUE: Final = "task_overdue"
WORKER_LOST: Final = "worker_lost"
MONITOR_LAG: Final = "monitor_lag"
QUEUE_PAUSED: Final = "queue_paused"  # a reminder: paused longer than its threshold, not stuck
RULES: Final = (QUEUE_STUCK, TASK_OVERDUE, WORKER_LOST, MONITOR_LAG, QUEUE_PAUSED)


def headline(rule: str, subject: str) -> str:
    """What and where, for subjects and banners: "queue emails stuck"."""
    return {
        QUEUE_STUCK: f"queue {subject} stuck",
        TASK_OVERDUE: f"task {subject} running too long",
        WORKER_LOST: f"worker {subject} gone",
        MONITOR_LAG: "monitor behind the event stream",
        QUEUE_PAUSED: f"queue {subject} still paused",
    }.get(rule, f"{rule} {subject}")

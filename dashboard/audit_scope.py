"""How an audit row names the incident it acted on: written by the service, read by the audit page.

An acknowledgement touches no task, so its audit row has no target rows; its ``scope`` names the
incident in words that start with a fixed form, from which the audit page links back to it.
"""

from __future__ import annotations

import re
from typing import Final

_INCIDENT: Final = re.compile(r"incident (\d+)\b")


def incident_scope(incident_id: int, headline: str) -> str:
    return f"incident {incident_id}: {headline}"


def incident_id_in_scope(scope: str) -> int | None:
    match = _INCIDENT.match(scope)
    return int(match.group(1)) if match else None

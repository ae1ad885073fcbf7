"""How a view tells the person what their action did: a flash message and a status.

Shared by the task actions and the incident acknowledgement, so both answer alike: 403 when the
role does not allow it, 400 (422 to htmx) when the request itself is unusable, else 200.
"""

from __future__ import annotations

from typing import Final, Protocol

from django.contrib import messages
from django.http import HttpRequest

# base.html's htmx-config swaps 403 and 422 in place (htmx 2 swaps no other 4xx), so a refusal's
# message appears where the person acted; 400 is sent to htmx as 422.
HTMX_REFUSED: Final = 422


class Outcome(Protocol):
    @property
    def done(self) -> object: ...  # truthy when something was done (a list of task ids, a flag)

    @property
    def permitted(self) -> bool: ...

    @property
    def message(self) -> str: ...


def flash_outcome(request: HttpRequest, result: Outcome | None, error: str | None) -> int:
    """Flash the outcome (or the input error); return the status the answer carries."""
    if error:
        messages.error(request, error)
    elif result is not None:
        level = messages.SUCCESS if result.done else messages.WARNING
        messages.add_message(request, level, result.message)
    if result is not None and not result.permitted:
        return 403
    return 400 if error else 200


def htmx_status(status: int) -> int:
    """The status to send htmx so that it swaps the answer in place."""
    return HTMX_REFUSED if status == 400 else status

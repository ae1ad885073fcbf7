"""Hide secrets in recorded arguments before they are shown.

Matching is by key name, case-insensitive, as a substring (``card`` hides ``card_number`` and
``credit_card``), in keyword arguments, nested dicts, and positional arguments by their parameter
name. The stored JSON is untouched: a retry uses the real values.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

MASK = "••••"


def _is_secret(key: str, keys: Iterable[str]) -> bool:
    lowered = key.lower()
    return any(k in lowered for k in keys)


def redact(value: Any, keys: Iterable[str]) -> Any:
    keys = [k.lower() for k in keys]
    if isinstance(value, dict):
        return {k: MASK if _is_secret(str(k), keys) else redact(v, keys) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, keys) for v in value]
    return value


@dataclass(frozen=True)
class ShownCall:
    args: str | None  # pretty JSON, redacted
    kwargs: str | None


def redacted_call(
    args_json: str | None, kwargs_json: str | None, arg_names: str | None, keys: Iterable[str]
) -> ShownCall:
    """The recorded call as text for display, with secrets masked. Never raises."""
    keys = [k.lower() for k in keys]
    names = (arg_names or "").split(",")
    shown_args = shown_kwargs = None
    try:
        if args_json is not None:
            args = json.loads(args_json)
            if isinstance(args, list):
                args = [
                    MASK
                    if i < len(names) and names[i] and _is_secret(names[i], keys)
                    else redact(v, keys)
                    for i, v in enumerate(args)
                ]
            shown_args = json.dumps(args, indent=2, ensure_ascii=False)
        if kwargs_json is not None:
            shown_kwargs = json.dumps(
                redact(json.loads(kwargs_json), keys), indent=2, ensure_ascii=False
            )
    except (ValueError, TypeError):
        return ShownCall("(unreadable)", "(unreadable)")
    return ShownCall(shown_args, shown_kwargs)

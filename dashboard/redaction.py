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

from tasktrail.task_inputs import is_secret_name

MASK = "••••"


def redact(value: Any, keys: Iterable[str]) -> Any:
    keys = [k.lower() for k in keys]
    if isinstance(value, dict):
        return {
            k: MASK if is_secret_name(str(k), keys) else redact(v, keys) for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v, keys) for v in value]
    return value


def _shown(value: Any) -> str:
    """Pretty JSON that is always valid UTF-8: a lone surrogate (kept by the recorder as a
    ``\\udcxx`` escape) is shown as that escape instead of breaking the page."""
    text = json.dumps(value, indent=2, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


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
                    if i < len(names) and names[i] and is_secret_name(names[i], keys)
                    else redact(v, keys)
                    for i, v in enumerate(args)
                ]
            shown_args = _shown(args)
        if kwargs_json is not None:
            shown_kwargs = _shown(redact(json.loads(kwargs_json), keys))
    except (ValueError, TypeError):
        return ShownCall("(unreadable)", "(unreadable)")
    return ShownCall(shown_args, shown_kwargs)

"""What the recorder keeps of a task's inputs: its business id and its arguments.

**Input id.** A task names the argument that identifies the business object it works on::

    @app.task(tasktrail_input_id="order_id")
    def send_invoice(order_id, template="default"): ...

The value may also be a callable ``(args, kwargs) -> str | None``, or ``False`` to record no input
id. A task that declares nothing gets the default: the first parameter called ``id`` or ending in
``_id`` (by the task's signature, positional or keyword), else the first positional argument when it
is a string or an integer. The default never picks a parameter whose name is a secret key
(``card_token``, ``password``: the names the dashboard redacts), since the input id is shown
everywhere unmasked; a task that names such a parameter itself gets what it asked for.

**Arguments.** Kept as JSON, faithfully, so an operator can retry with the same values; when the
JSON is larger than the cap (64 KiB by default) or the values are not JSON, nothing is kept and the
row says why.

Imports no Django.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from celery import Task

INPUT_ID_ATTRIBUTE = "tasktrail_input_id"
_ID_TYPES = (str, int)
# Argument names whose values are secrets (matched case-insensitively, as substrings); the
# default of the TASKTRAIL_REDACT_KEYS setting.
DEFAULT_SECRET_KEYS: Final = (
    "password", "passwd", "token", "secret", "authorization", "api_key", "card", "cvv",
)  # fmt: skip


def is_secret_name(name: str, secret_keys: Sequence[str]) -> bool:
    lowered = name.lower()
    return any(key.lower() in lowered for key in secret_keys)


@dataclass(frozen=True)
class InputRule:
    """How to find the input id among a task's arguments, resolved once per task."""

    param: str | None = None  # keyword name
    position: int | None = None  # index among positional args
    func: Callable[[Sequence[Any], Mapping[str, Any]], Any] | None = None
    first_positional: bool = True  # the default may fall back to the first positional argument
    disabled: bool = False
    arg_names: tuple[str, ...] = ()
    secret_keys: tuple[str, ...] = DEFAULT_SECRET_KEYS


def resolve_rule(task: Any, secret_keys: Sequence[str] = DEFAULT_SECRET_KEYS) -> InputRule:
    """Work out, from the task's declaration and signature, where its input id lives."""
    secret_keys = tuple(secret_keys)
    arg_names = _positional_names(task)
    declared = getattr(task, INPUT_ID_ATTRIBUTE, None) if task is not None else None
    if declared is False:
        return InputRule(disabled=True, arg_names=arg_names)
    if callable(declared):
        # A function set as a task option becomes a method of the task class: unbind it.
        if inspect.ismethod(declared) and isinstance(declared.__self__, Task):
            declared = declared.__func__
        return InputRule(func=declared, arg_names=arg_names)
    if isinstance(declared, str) and declared:
        position = arg_names.index(declared) if declared in arg_names else None
        return InputRule(param=declared, position=position, arg_names=arg_names)
    for index, name in enumerate(arg_names):
        if _is_id_name(name) and not is_secret_name(name, secret_keys):
            return InputRule(param=name, position=index, arg_names=arg_names)
    # A keyword *_id (through **kwargs) may still name the object when the first parameter is a
    # secret: only the positional fallback is off then.
    first_is_secret = bool(arg_names) and is_secret_name(arg_names[0], secret_keys)
    return InputRule(
        first_positional=not first_is_secret, arg_names=arg_names, secret_keys=secret_keys
    )


def extract_input_id(rule: InputRule, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str | None:
    """Apply ``rule`` to one call's arguments. Never raises: a broken rule gives no id."""
    if rule.disabled:
        return None
    try:
        if rule.func is not None:
            value = rule.func(args, kwargs)
        elif rule.param is not None:
            if rule.param in kwargs:
                value = kwargs[rule.param]
            elif rule.position is not None and rule.position < len(args):
                value = args[rule.position]
            else:
                value = None
        else:
            value = _default_input_id(args, kwargs, rule)
    except Exception:
        return None
    if value is None or isinstance(value, bool):
        return None
    return str(value) if isinstance(value, _ID_TYPES) else None


def _is_id_name(name: str) -> bool:
    return name == "id" or name.endswith("_id")


def _default_input_id(args: Sequence[Any], kwargs: Mapping[str, Any], rule: InputRule) -> Any:
    # Reached when the signature is unknown (task not registered here) or names no *_id parameter.
    for key, value in kwargs.items():
        if _is_id_name(key) and not is_secret_name(key, rule.secret_keys):
            return value
    if rule.first_positional and args and isinstance(args[0], _ID_TYPES):
        return args[0]
    return None


def _positional_names(task: Any) -> tuple[str, ...]:
    run = getattr(task, "run", None)
    if run is None:
        return ()
    try:
        params = inspect.signature(run).parameters.values()
    except (TypeError, ValueError):
        return ()
    # ``task.run`` of a bind=True task is a bound method, so ``self`` is already left out.
    return tuple(p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


@dataclass(frozen=True)
class KeptArgs:
    args: str | None
    kwargs: str | None
    dropped: str | None  # why they were not kept


def keep_args(args: Any, kwargs: Any, max_bytes: int) -> KeptArgs:
    """Serialize a call's arguments for a later retry, within ``max_bytes`` of JSON."""
    try:
        args_json = json.dumps(list(args or ()), separators=(",", ":"), ensure_ascii=False)
        kwargs_json = json.dumps(dict(kwargs or {}), separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        return KeptArgs(None, None, f"not JSON-serializable: {exc}"[:255])
    size = len(args_json.encode("utf-8", "surrogatepass")) + len(
        kwargs_json.encode("utf-8", "surrogatepass")
    )
    if size > max_bytes:
        return KeptArgs(None, None, f"too large: {size} bytes over the {max_bytes}-byte cap")
    return KeptArgs(args_json, kwargs_json, None)

"""The exact call a retry will send, as the operator confirms it.

A retry publishes the task's name with its recorded arguments, unchanged. Before confirming, the
operator sees that call: the name, the queue, and every argument in order. Secrets stay hidden, but
never what they hide: a masked value is shown as masked, with its length; and a Celery signature
anywhere in an argument (what ``map``, ``starmap``, ``chunks``, a chord's callback carry: another
task to run) is named, with its task and its own arguments, masked or not.

Arguments are labelled and masked by the parameter names the task's **code** has, as its workers
reported them in the catalog; names an event claims (``arg_names`` on the task row, which any
event of the task may set) are used only when no worker reported names, and the call says so.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from django.conf import settings

from dashboard.models import TaskRun
from dashboard.selectors.catalog import TaskCatalog
from tasktrail.task_inputs import is_secret_name

MASK: Final = "••••"
MAX_DEPTH: Final = 50  # deeper values are shown as JSON, whole: nothing is hidden past it

NAMES_FROM_CATALOG: Final = "catalog"
NAMES_FROM_EVENT: Final = "event"
NAMES_UNKNOWN: Final = ""


@dataclass(frozen=True)
class ShownArg:
    label: str  # "0 payment_id", "1", or a keyword
    text: str  # the value as sent (JSON), with secret values replaced by a masked marker
    masked: bool  # the whole value is masked
    signatures: tuple[str, ...]  # task names of the signatures it carries, outermost first


@dataclass(frozen=True)
class RetryCall:
    name: str
    queue: str | None
    args: tuple[ShownArg, ...]
    kwargs: tuple[ShownArg, ...]
    names_from: str  # NAMES_FROM_CATALOG, NAMES_FROM_EVENT or NAMES_UNKNOWN
    unreadable: str = ""  # why the recorded arguments cannot be shown (then no retry is offered)

    @property
    def signatures(self) -> tuple[str, ...]:
        return tuple(n for a in (*self.args, *self.kwargs) for n in a.signatures)


def masked_marker(value: Any) -> str:
    """What stands for a masked value: its length, so a masked value cannot hide a large one."""
    if isinstance(value, str):
        return f"{MASK} (masked, {len(value)} characters)"
    try:
        return f"{MASK} (masked, {len(_json(value))} characters of JSON)"
    except (ValueError, TypeError, RecursionError):
        return f"{MASK} (masked, nested too deep to measure)"


def is_signature(value: Any) -> bool:
    """A Celery signature as it travels in a message: a dict with ``task`` and its call."""
    return (
        isinstance(value, dict)
        and isinstance(value.get("task"), str)
        and ("subtask_type" in value or ("args" in value and "kwargs" in value))
    )


def signatures_in(value: Any, depth: int = 0) -> list[str]:
    """The task names of every signature in ``value``, outermost first (depth-first)."""
    if depth > MAX_DEPTH:
        return []
    found: list[str] = []
    if isinstance(value, dict):
        if is_signature(value):
            found.append(value["task"])
        for item in value.values():
            found += signatures_in(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            found += signatures_in(item, depth + 1)
    return found


class NameLookup:
    """Parameter names of the tasks that signatures name, from the catalog: at most ``budget``
    names read per page (each may be a query), so forged arguments naming thousands of tasks
    cost no more; past it, names are unknown (and every string masked)."""

    def __init__(self, catalog: TaskCatalog, budget: int = 20) -> None:
        self.catalog = catalog
        self.budget = budget
        self._seen: dict[str, Sequence[str] | None] = {}

    def __call__(self, task: str) -> Sequence[str] | None:
        if task not in self._seen:
            if len(self._seen) >= self.budget:
                return None
            known = self.catalog.get(task)
            self._seen[task] = known.arg_names if known is not None else None
        return self._seen[task]


class _Shower:
    """Replaces secrets by their masked marker, by key and parameter name, through signatures."""

    def __init__(self, keys: Sequence[str], lookup: NameLookup) -> None:
        self.keys = [k.lower() for k in keys if k]
        self.lookup = lookup

    def secret(self, name: object) -> bool:
        return is_secret_name(str(name), self.keys)

    def value(self, value: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            return value
        if isinstance(value, dict):
            if is_signature(value):
                return self.signature(value, depth)
            if is_signature(value.get("task")) and isinstance(value.get("it"), list):
                return self.mapped(value, depth)
            return {
                k: masked_marker(v) if self.secret(k) else self.value(v, depth + 1)
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self.value(v, depth + 1) for v in value]
        return value

    def signature(self, sig: dict[str, Any], depth: int) -> dict[str, Any]:
        """Another task's call: its name whole, its positional arguments masked by the names its
        code has (every string when no worker reported them), its keywords by key."""
        names = self.names(sig["task"])
        shown: dict[str, Any] = {}
        for key, item in sig.items():
            if key == "task":
                shown[key] = item
            elif key == "args" and isinstance(item, list):
                shown[key] = self.positional(item, names, depth + 1)
            else:
                shown[key] = self.value(item, depth + 1)
        return shown

    def mapped(self, kwargs: dict[str, Any], depth: int) -> dict[str, Any]:
        """The keywords of map, starmap or chunks: ``task`` runs once per item of ``it``, each
        item its argument list (starmap, chunks) or its one argument (map)."""
        names = self.names(kwargs["task"]["task"])
        shown = {
            k: masked_marker(v) if self.secret(k) else self.value(v, depth + 1)
            for k, v in kwargs.items()
            if k != "it"
        }
        shown["it"] = [
            self.positional(item, names, depth + 2)
            if isinstance(item, list)
            else self.positional([item], names, depth + 2)[0]
            for item in kwargs["it"]
        ]
        return shown

    def positional(self, args: list[Any], names: Sequence[str] | None, depth: int) -> list[Any]:
        shown = []
        for i, arg in enumerate(args):
            if names is not None and i < len(names) and self.secret(names[i]):
                shown.append(masked_marker(arg))
            elif names is None and isinstance(arg, str):
                shown.append(masked_marker(arg))  # a name unknown may be a secret's
            else:
                shown.append(self.value(arg, depth + 1))
        return shown

    def names(self, task: str) -> Sequence[str] | None:
        return self.lookup(task)


def retry_call(
    task: TaskRun,
    catalog: TaskCatalog,
    keys: Iterable[str] | None = None,
    lookup: NameLookup | None = None,
) -> RetryCall:
    """The call a retry of ``task`` sends, as it is to be shown. Never raises. ``lookup``: one per
    page showing several calls, so they share its budget."""
    keys = list(settings.TASKTRAIL_REDACT_KEYS if keys is None else keys)
    shower = _Shower(keys, lookup or NameLookup(catalog))
    known = catalog.get(task.name)
    names: Sequence[str] | None
    if known is not None and known.arg_names is not None:
        names, names_from = known.arg_names, NAMES_FROM_CATALOG
    elif task.arg_names:
        names, names_from = task.arg_names.split(","), NAMES_FROM_EVENT
    else:
        names, names_from = (), NAMES_UNKNOWN
    queue = task.queue or catalog.default_queue(task.name)
    try:
        args = json.loads(task.args or "[]")
        kwargs = json.loads(task.kwargs or "{}")
    except (ValueError, TypeError, RecursionError):
        return RetryCall(task.name or "", queue, (), (), names_from, "not valid JSON")
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        return RetryCall(task.name or "", queue, (), (), names_from, "not a list and a map")
    shown_args = []
    for i, arg in enumerate(args):
        name = names[i] if i < len(names) else ""
        secret = bool(name) and shower.secret(name)
        shown_args.append(_arg(f"{i} {name}".strip(), arg, secret, shower))
    shown_kwargs = [_arg(str(k), v, shower.secret(k), shower) for k, v in kwargs.items()]
    return RetryCall(task.name or "", queue, tuple(shown_args), tuple(shown_kwargs), names_from)


def carried_tasks(task: TaskRun) -> tuple[str, ...]:
    """The tasks the recorded arguments carry (signatures), without building the whole call."""
    try:
        args, kwargs = json.loads(task.args or "[]"), json.loads(task.kwargs or "{}")
    except (ValueError, TypeError, RecursionError):
        return ()
    return tuple(signatures_in([args, kwargs]))


def _arg(label: str, value: Any, secret: bool, shower: _Shower) -> ShownArg:
    signatures = tuple(signatures_in(value))
    if secret and not signatures:
        return ShownArg(label, masked_marker(value), True, ())
    # A masked value that carries a task to run is shown as that task's call: masking must not
    # hide what will run. Its own secrets (by the inner task's names, by key) stay masked.
    try:
        text = _json(shower.value(value, 0), indent=2)
    except (ValueError, TypeError, RecursionError):
        text = masked_marker(value) if secret else repr(value)
    return ShownArg(label, text, False, signatures)


def _json(value: Any, indent: int | None = None) -> str:
    """JSON as sent, always valid UTF-8 (a lone surrogate shows as its escape)."""
    separators = None if indent else (",", ":")
    text = json.dumps(value, ensure_ascii=False, indent=indent, separators=separators)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text

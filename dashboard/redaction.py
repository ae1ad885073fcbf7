"""Hide secrets in recorded arguments, results, error messages and tracebacks before they are shown.

Matching is by key name, case-insensitive, as a substring (``card`` hides ``card_number`` and
``credit_card``), in keyword arguments, nested dicts, and positional arguments by their parameter
name. The stored values are untouched: a retry uses the real values.

Celery signatures nested in arguments (a chord's callback, ``map``/``starmap``/``chunks``) carry
positional arguments of another task: they are masked by that task's parameter names when a
``names_of`` lookup knows them, and every string among them is masked when it does not.

Free text (an error message, a traceback, a string argument) has ``key=value``, ``key: value``,
``"key": "value"`` and ``Authorization: Bearer …`` secrets masked, and URL passwords. The text is
cut to ``MAX_TEXT_CHARS`` first and every pattern is bounded, so no input makes the scan slow.

Every walker stops at ``MAX_DEPTH`` levels (deeper values show as ``TOO_DEEP``): arguments nested
600 levels deep must not raise ``RecursionError`` in a page.
"""

from __future__ import annotations

import ast
import functools
import json
import re
import string
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from tasktrail.task_inputs import is_secret_name

MASK: Final = "••••"
TOO_DEEP: Final = "… (nested too deep)"
MAX_DEPTH: Final = 50
MAX_TEXT_CHARS: Final = 256 * 1024
TRUNCATED: Final = "\n… (cut for display)"

# Returns a task's positional parameter names, or None when they are not known.
NamesOf = Callable[[str], Sequence[str] | None]

# Celery's own tasks that run another task over a list of argument sets.
MAP_TASKS: Final = {"celery.map": "xmap", "celery.starmap": "xstarmap", "celery.chunks": "chunks"}


def _keys(keys: Iterable[str]) -> list[str]:
    return [k.lower() for k in keys if k]


# -- free text ----------------------------------------------------------------------------------

# After a key holding a secret word (as in code, JSON, a header or a repr: ``card_token=``,
# ``"password": ``, ``Authorization: ``): its value, quoted (with the same quote), or an HTTP
# auth scheme and its credential, or a bare run of characters not followed by code
# (``kwargs.get(``). Every repeat is bounded, and the scan looks only where a secret word is, so
# a long text of ordinary ``key=value`` pairs costs one pass of the regex engine.
_WORD_CHARS: Final = frozenset(string.ascii_letters + string.digits + "_.-")
_WORD_TAIL: Final = re.compile(r"[\w.-]*")
_SEPARATOR: Final = re.compile(r"""['"]?[ \t]{0,4}[:=][ \t]{0,4}""")
_VALUE: Final = re.compile(
    r"""(?P<q>['"])(?P<quoted>(?:\\.|(?!(?P=q))[^\\\n]){0,2048})(?P=q)"""
    r"""|(?:(?i:bearer|basic|token|digest|apikey)[ \t]{1,4})?"""
    r"""(?P<bare>[^\s,;&(){}\[\]<>'"]{1,1024})(?![\w(\[.])"""
)
MAX_KEY_CHARS: Final = 64
# A password in a URL's user part: scheme://user:password@host
_URL_PASSWORD: Final = re.compile(
    r"(?P<pre>\b[A-Za-z][\w+.-]{0,30}://[^\s:/@]{0,256}:)[^\s/@]{1,256}@"
)


@functools.lru_cache(maxsize=8)
def _secret_words(keys: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(k) for k in sorted(keys, key=len, reverse=True)), re.I)


def scrub_text(text: str | None, keys: Iterable[str]) -> str:
    """``text`` with secret-looking values masked; cut to ``MAX_TEXT_CHARS`` first ("" for None).
    Never raises."""
    if not text:
        return ""
    text = str(text)
    keys = _keys(keys)
    cut = len(text) > MAX_TEXT_CHARS
    if cut:
        text = text[:MAX_TEXT_CHARS]
    try:
        if keys:
            text = _masked_values(text, _secret_words(tuple(keys)))
        text = _URL_PASSWORD.sub(lambda m: m["pre"] + MASK + "@", text)
    except Exception:  # never a page's error: show nothing rather than the secret
        return MASK
    return text + TRUNCATED if cut else text


def _masked_values(text: str, words: re.Pattern[str]) -> str:
    parts: list[str] = []
    done = 0  # text[:done] is in parts
    scanned = 0  # the end of the last key looked at: later hits in the same word are skipped
    for hit in words.finditer(text):
        if hit.start() < scanned:
            continue
        key_end = _WORD_TAIL.match(text, hit.end()).end()  # type: ignore[union-attr]
        scanned = key_end
        key_start = hit.start()
        while (
            key_start > max(0, hit.start() - MAX_KEY_CHARS) and text[key_start - 1] in _WORD_CHARS
        ):
            key_start -= 1
        if key_start < done or key_end - key_start > MAX_KEY_CHARS:
            continue
        separator = _SEPARATOR.match(text, key_end)
        value = _VALUE.match(text, separator.end()) if separator else None
        if value is None:
            continue
        group = "quoted" if value["q"] else "bare"
        parts += [text[done : value.start(group)], MASK]
        done = scanned = value.end(group)
    return "".join([*parts, text[done:]])


# -- structured values --------------------------------------------------------------------------


def _is_signature(value: dict[Any, Any]) -> bool:
    """A Celery signature as it travels in a message (a dict with ``task`` and its call)."""
    return isinstance(value.get("task"), str) and (
        "subtask_type" in value or ("args" in value and "kwargs" in value)
    )


class _Walker:
    def __init__(self, keys: list[str], names_of: NamesOf | None) -> None:
        self.keys = keys
        self.names_of = names_of

    def names(self, task: Any) -> Sequence[str] | None:
        if not isinstance(task, str) or self.names_of is None:
            return None
        try:
            return self.names_of(task)
        except Exception:
            return None

    def value(self, value: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            return TOO_DEEP
        if isinstance(value, str):
            return scrub_text(value, self.keys)
        if isinstance(value, dict):
            if _is_signature(value):
                return self.signature(value, depth)
            return self.mapping(value, depth)
        if isinstance(value, list | tuple | set | frozenset):
            return [self.value(v, depth + 1) for v in value]
        return value

    def mapping(self, value: dict[Any, Any], depth: int) -> dict[Any, Any]:
        return {
            k: MASK if is_secret_name(str(k), self.keys) else self.value(v, depth + 1)
            for k, v in value.items()
        }

    def positional(self, args: Any, names: Sequence[str] | None, depth: int) -> Any:
        """A call's positional arguments: masked by name, or every string when names are unknown."""
        if depth > MAX_DEPTH:
            return TOO_DEEP
        if not isinstance(args, list | tuple):
            return self.unnamed(args, depth) if names is None else self.value(args, depth)
        shown = []
        for i, arg in enumerate(args):
            if names is None:
                shown.append(self.unnamed(arg, depth + 1))
            elif i < len(names) and names[i] and is_secret_name(names[i], self.keys):
                shown.append(MASK)
            else:
                shown.append(self.value(arg, depth + 1))
        return shown

    def unnamed(self, value: Any, depth: int) -> Any:
        """A value whose parameter name is unknown: its strings are masked, dict keys still read."""
        if depth > MAX_DEPTH:
            return TOO_DEEP
        if isinstance(value, str):
            return MASK
        if isinstance(value, list | tuple | set | frozenset):
            return [self.unnamed(v, depth + 1) for v in value]
        if isinstance(value, dict):
            return self.value(value, depth)
        return value

    def signature(self, sig: dict[Any, Any], depth: int) -> dict[Any, Any]:
        shown = self.mapping({k: v for k, v in sig.items() if k not in ("args", "kwargs")}, depth)
        if "args" in sig:
            shown["args"] = self.positional(sig["args"], self.names(sig["task"]), depth + 1)
        if "kwargs" in sig:
            kind = sig.get("subtask_type") or MAP_TASKS.get(sig["task"])
            shown["kwargs"] = self.call_kwargs(sig["kwargs"], kind, depth + 1)
        return shown

    def call_kwargs(self, kwargs: Any, map_kind: Any, depth: int) -> Any:
        """Keyword arguments; those of map/starmap/chunks hold the inner task's argument sets."""
        if depth > MAX_DEPTH:
            return TOO_DEEP
        if not isinstance(kwargs, dict):
            return self.value(kwargs, depth)
        inner = kwargs.get("task")
        items = kwargs.get("it")
        if not (isinstance(inner, dict) and isinstance(items, list | tuple)):
            return self.mapping(kwargs, depth)
        shown = self.mapping({k: v for k, v in kwargs.items() if k != "it"}, depth)
        names = self.names(inner.get("task"))
        if map_kind == "xmap":  # each item is the inner task's first argument
            shown["it"] = [self.positional([item], names, depth + 2)[0] for item in items]
        elif map_kind in ("xstarmap", "chunks"):  # each item is its argument list
            shown["it"] = [self.positional(item, names, depth + 2) for item in items]
        else:  # not known which: neither reading may show a secret
            shown["it"] = [self.positional(item, None, depth + 2) for item in items]
        return shown


def redact(value: Any, keys: Iterable[str], names_of: NamesOf | None = None) -> Any:
    """``value`` with secret keys masked, free text scrubbed, nesting cut at ``MAX_DEPTH``."""
    return _Walker(_keys(keys), names_of).value(value, 0)


def _shown(value: Any) -> str:
    """Pretty JSON that is always valid UTF-8: a lone surrogate (kept by the recorder as a
    ``\\udcxx`` escape) is shown as that escape instead of breaking the page."""
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
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
    args_json: str | None,
    kwargs_json: str | None,
    arg_names: str | None,
    keys: Iterable[str],
    *,
    name: str | None = None,
    names_of: NamesOf | None = None,
) -> ShownCall:
    """The recorded call of task ``name`` as text for display, with secrets masked. Never raises."""
    walker = _Walker(_keys(keys), names_of)
    names = (arg_names or "").split(",")
    shown_args = shown_kwargs = None
    try:
        if args_json is not None:
            args = json.loads(args_json)
            shown_args = _shown(walker.positional(args, names, 0))
        if kwargs_json is not None:
            kwargs = json.loads(kwargs_json)
            shown_kwargs = _shown(walker.call_kwargs(kwargs, MAP_TASKS.get(name or ""), 0))
    except (ValueError, TypeError, RecursionError, MemoryError):
        return ShownCall("(unreadable)", "(unreadable)")
    return ShownCall(shown_args, shown_kwargs)


def redacted_repr(
    text: str | None,
    keys: Iterable[str],
    names_of: NamesOf | None = None,
    *,
    args_of: str | None = None,
    rereads: int = 2,
) -> str:
    """A value stored as JSON or as a Python literal (django-celery-results keeps the call as its
    repr), shown redacted; anything else is scrubbed as free text. ``args_of``: the value is the
    positional arguments of this task (masked by its parameter names, or every string when they
    are not known). Never raises."""
    if text is None:
        return ""
    text = str(text)
    if len(text) > MAX_TEXT_CHARS or rereads < 0:
        return scrub_text(text, keys)
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(text)
        except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
            continue
        if isinstance(value, str):  # a repr of a repr: read once more
            return redacted_repr(value, keys, names_of, args_of=args_of, rereads=rereads - 1)
        walker = _Walker(_keys(keys), names_of)
        try:
            if args_of is not None:
                return _shown(walker.positional(value, walker.names(args_of), 0))
            return _shown(walker.value(value, 0))
        except (ValueError, TypeError, RecursionError):
            break
    return scrub_text(text, keys)

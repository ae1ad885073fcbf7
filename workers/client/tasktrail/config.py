"""The client's configuration: environment variables, then the Celery app's broker.

Read when first needed (the first publish, ``worker_init`` or the first task signal), not when
``tasktrail.install(app)`` is called, so a shop may configure its app after installing. Keyword
overrides given to ``install`` win over the environment. Imports no Django.

============================ ======================== ============================================
Variable                     Default                  Meaning
============================ ======================== ============================================
TASKTRAIL_RECORDER_URL       the app's broker_url,    Redis the events are written to (redis://,
                             when it is a Redis URL   rediss://, unix://, valkey://, valkeys://)
TASKTRAIL_STREAM             tasktrail:events         Redis stream name
TASKTRAIL_MAX_ARGS_BYTES     65536                    Arguments kept for retry, bytes of JSON
TASKTRAIL_REDACT_KEYS        password,passwd,token,…  Comma list: argument names holding these
                                                      words are never used as an input id
TASKTRAIL_STREAM_MAX_ENTRIES 1000000                  Stream length cap, in entries (batches of
                                                      events); past it the oldest unread entries
                                                      are dropped and counted. 0: no cap
TASKTRAIL_EVENT_KEY          (none: unsigned)         id:secret pairs, comma-separated: each stream
                                                      entry is signed with the first (HMAC-SHA256,
                                                      ``tasktrail.signing``); secrets >= 16 chars
TASKTRAIL_HEARTBEAT_INTERVAL 5                        Seconds between a worker's heartbeats
                                                      (``tasktrail.heartbeat``)
TASKTRAIL_APP_VERSION        (none)                   The shop's release, in each heartbeat;
                                                      ``install(app, release=...)`` wins
TASKTRAIL_PAUSE_REFRESH_     15                       Seconds between a worker's reads of the
SECONDS                                               paused queues (``tasktrail.queue_pauses``)
TASKTRAIL_CATALOG_INTERVAL   600                      Seconds between task catalog reports
============================ ======================== ============================================
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote

from kombu.utils.url import maybe_sanitize_url

from tasktrail.events import DEFAULT_MAX_ARGS_BYTES
from tasktrail.signing import ENV_EVENT_KEY, SigningConfigError, SigningKey, parse_keys
from tasktrail.stream_writer import DEFAULT_MAX_ENTRIES, DEFAULT_STREAM
from tasktrail.task_inputs import DEFAULT_SECRET_KEYS

ENV_RECORDER_URL: Final = "TASKTRAIL_RECORDER_URL"
ENV_STREAM: Final = "TASKTRAIL_STREAM"
ENV_MAX_ARGS_BYTES: Final = "TASKTRAIL_MAX_ARGS_BYTES"
ENV_REDACT_KEYS: Final = "TASKTRAIL_REDACT_KEYS"
ENV_STREAM_MAX_ENTRIES: Final = "TASKTRAIL_STREAM_MAX_ENTRIES"

MAX_ARGS_BYTES_LIMIT: Final = 1024 * 1024  # one event's arguments; the stream entry has a cap too
MAX_STREAM_NAME: Final = 255
MAX_ENTRIES_LIMIT: Final = 10**12

# Schemes redis-py connects with, and the aliases kombu or Valkey users write for the same thing.
REDIS_SCHEMES: Final = ("redis://", "rediss://", "unix://")
_ALIASES: Final = (
    ("valkey://", "redis://"),
    ("valkeys://", "rediss://"),
    ("redis+socket://", "unix://"),  # kombu's spelling of a Redis unix socket
    ("socket://", "unix://"),
)
OVERRIDES: Final = frozenset(
    {"recorder_url", "stream", "max_args_bytes", "secret_keys", "stream_max_entries", "event_key"}
)


class ConfigError(ValueError):
    """The configuration cannot be used; the message has every credential masked."""


@dataclass(frozen=True)
class ClientConfig:
    recorder_url: str  # a URL redis-py connects with (aliases already translated)
    stream: str = DEFAULT_STREAM
    max_args_bytes: int = DEFAULT_MAX_ARGS_BYTES
    secret_keys: tuple[str, ...] = DEFAULT_SECRET_KEYS
    stream_max_entries: int = DEFAULT_MAX_ENTRIES
    event_keys: tuple[SigningKey, ...] = ()  # the first signs every entry; none: unsigned

    def __repr__(self) -> str:  # never print the URL's password nor a signing secret
        return (
            f"ClientConfig(recorder_url={masked(self.recorder_url)!r}, stream={self.stream!r}, "
            f"max_args_bytes={self.max_args_bytes}, secret_keys={self.secret_keys!r}, "
            f"stream_max_entries={self.stream_max_entries}, "
            f"event_keys={[key.id for key in self.event_keys]!r})"
        )


def masked(url: Any) -> str:
    """``url`` with every password replaced by ``**``: each URL of a kombu failover list
    (``url1;url2``), not only the first. The query is left out (kombu drops it; redis-py reads
    ``?password=``). Never raises, never shows a password."""
    try:
        return ";".join(_masked_one(part.strip()) for part in str(url).split(";"))
    except Exception:
        return "<unreadable URL>"


def _masked_one(part: str) -> str:
    if "://" not in part:  # not a URL kombu reads: show it only when it cannot hide a credential
        return _MASK if any(mark in part for mark in "@?=") else part
    scheme, rest = part.split("://", 1)
    scheme = scheme if scheme and set(scheme) <= _SCHEME_CHARS else ""
    netloc = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" in rest[len(netloc) :]:  # a password holding "/?#": kombu would show part of it
        return f"{scheme}://{_MASK}" if scheme else _MASK
    try:
        return str(maybe_sanitize_url(part, mask=_MASK))
    except Exception:  # a bad port or IPv6 host: keep the scheme, which says what was meant
        return f"{scheme}://{_MASK}" if scheme else _MASK


_MASK: Final = "**"
_SCHEME_CHARS: Final = frozenset(string.ascii_letters + string.digits + "+.-")
# A query value that is a credential (redis-py reads ?password=); ";" also parts kombu's lists.
_SECRET_QUERY_VALUE: Final = re.compile(
    r"[?&;][^=&;?#/]*(?:pass|pwd|secret|token)[^=&;?#/]*=([^&;#]*)", re.IGNORECASE
)


def scrubbed(text: str, url: str) -> str:
    """``text`` with every password of ``url`` (each URL of a failover list, as written and
    percent-decoded) replaced by ``**``: for error messages that repeat the URL. Never raises."""
    try:
        for secret in sorted(_passwords(str(url)), key=len, reverse=True):
            text = text.replace(secret, _MASK)
        return text
    except Exception:
        return "<unreadable message>"


def _passwords(url: str) -> set[str]:
    found: set[str] = set()
    for part in url.split(";"):
        if "://" not in part:
            continue
        rest = part.split("://", 1)[1]
        # The user part as urllib reads it (up to the first "/?#") and as a careless writer
        # meant it (up to the last "@"): a password holding "/" is found either way.
        for netloc in (re.split(r"[/?#]", rest, maxsplit=1)[0], rest.rpartition("@")[0] + "@"):
            userinfo = netloc.rpartition("@")[0]
            if ":" in userinfo:
                found.add(userinfo.split(":", 1)[1])
    found.update(match.group(1) for match in _SECRET_QUERY_VALUE.finditer(url))
    found |= {unquote(secret) for secret in found}
    return {secret for secret in found if secret and secret != _MASK}


def resolve(
    app: Any, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> ClientConfig:
    """The configuration for ``app``: ``overrides``, then ``environ`` (default ``os.environ``),
    then the app's broker. Raises ConfigError, with credentials masked, when it cannot be used."""
    given = dict(overrides or {})
    unknown = sorted(set(given) - OVERRIDES)
    if unknown:
        raise ConfigError(f"unknown tasktrail.install() option(s): {', '.join(unknown)}")
    env = os.environ if environ is None else environ
    return ClientConfig(
        recorder_url=_recorder_url(app, given.get("recorder_url"), env),
        stream=_stream(given.get("stream"), env),
        max_args_bytes=_max_args_bytes(given.get("max_args_bytes"), env),
        secret_keys=_secret_keys(given.get("secret_keys"), env),
        stream_max_entries=_stream_max_entries(given.get("stream_max_entries"), env),
        event_keys=_event_keys(given.get("event_key"), env),
    )


def _event_keys(given: Any, env: Mapping[str, str]) -> tuple[SigningKey, ...]:
    text = str(given) if given is not None else env.get(ENV_EVENT_KEY, "")
    source = "the event_key given to tasktrail.install()" if given is not None else ENV_EVENT_KEY
    try:
        return parse_keys(text, source)
    except SigningConfigError as exc:
        raise ConfigError(str(exc)) from None


def _recorder_url(app: Any, given: Any, env: Mapping[str, str]) -> str:
    if given:
        return redis_url(str(given), "the recorder_url given to tasktrail.install()")
    from_env = env.get(ENV_RECORDER_URL, "").strip()
    if from_env:
        return redis_url(from_env, ENV_RECORDER_URL)
    broker = _broker_url(app)
    if not broker:
        raise ConfigError(
            f"no Redis to write events to: set {ENV_RECORDER_URL}, or give the Celery app a Redis "
            "broker_url"
        )
    try:
        return redis_url(broker, "the app's broker_url")
    except ConfigError:
        raise ConfigError(
            f"the app's broker_url {masked(broker)} is not a Redis URL: set {ENV_RECORDER_URL} to "
            "the Redis the events go to (redis://, rediss:// or unix://)"
        ) from None


def _broker_url(app: Any) -> str:
    value = getattr(getattr(app, "conf", None), "broker_url", None)  # CELERY_BROKER_URL wins there
    if isinstance(value, list | tuple):  # failover list: the first is the one in use
        value = value[0] if value else None
    text = str(value or "").strip()
    return text.split(";", 1)[0].strip()  # kombu's "url1;url2" failover spelling


def redis_url(url: str, source: str) -> str:
    """``url`` as redis-py connects with it, or ConfigError naming ``source``."""
    url = url.strip()
    lowered = url.lower()
    for alias, scheme in _ALIASES:
        if lowered.startswith(alias):
            url = scheme + url[len(alias) :]
            lowered = url.lower()
            break
    if not lowered.startswith(REDIS_SCHEMES):
        raise ConfigError(
            f"{source} {masked(url)} is not a Redis URL (redis://, rediss://, unix://, valkey://)"
        )
    from redis.connection import parse_url

    try:
        parse_url(url)
    except Exception as exc:  # a bad port, a bad query value: say what, without the password
        raise ConfigError(
            f"{source} {masked(url)} cannot be used: {_without(str(exc), url)}"
        ) from None
    return url


def _without(message: str, url: str) -> str:
    # An error message from parsing might quote the URL, password included.
    return scrubbed(message, url)[:200]


def _stream(given: Any, env: Mapping[str, str]) -> str:
    value = str(given if given is not None else env.get(ENV_STREAM, "") or DEFAULT_STREAM).strip()
    if not value or len(value) > MAX_STREAM_NAME or not value.isprintable():
        raise ConfigError(f"{ENV_STREAM} must be 1 to {MAX_STREAM_NAME} printable characters")
    return value


def _max_args_bytes(given: Any, env: Mapping[str, str]) -> int:
    return _whole_number(
        given, env, ENV_MAX_ARGS_BYTES, DEFAULT_MAX_ARGS_BYTES, MAX_ARGS_BYTES_LIMIT, "bytes"
    )


def _secret_keys(given: Any, env: Mapping[str, str]) -> tuple[str, ...]:
    if given is not None:
        items: Sequence[Any] = given.split(",") if isinstance(given, str) else list(given)
    elif env.get(ENV_REDACT_KEYS, "").strip():
        items = env[ENV_REDACT_KEYS].split(",")
    else:
        return DEFAULT_SECRET_KEYS
    keys = tuple(dict.fromkeys(str(item).strip() for item in items if str(item).strip()))
    if not keys:
        raise ConfigError(f"{ENV_REDACT_KEYS} names no key (use the default by leaving it unset)")
    return keys


def _stream_max_entries(given: Any, env: Mapping[str, str]) -> int:
    return _whole_number(
        given,
        env,
        ENV_STREAM_MAX_ENTRIES,
        DEFAULT_MAX_ENTRIES,
        MAX_ENTRIES_LIMIT,
        "entries",
        zero="0 (no cap)",
    )


def _whole_number(
    given: Any,
    env: Mapping[str, str],
    name: str,
    default: int,
    limit: int,
    unit: str,
    zero: str = "0",
) -> int:
    """``given``, else the variable ``name``, else ``default``: a whole number 0 to ``limit``."""
    raw: Any = given if given is not None else env.get(name, "").strip()
    if raw == "" or raw is None:
        return default
    try:
        if isinstance(raw, bool):
            raise ValueError
        number = int(raw)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{name} must be a whole number of {unit}, got {str(raw)[:40]!r}"
        ) from None
    if not 0 <= number <= limit:
        raise ConfigError(f"{name} must be {zero} to {limit}, got {number}")
    return number

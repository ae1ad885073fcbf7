"""One task's result, for the task page: read from the shop's result backend when
``TASKTRAIL_RESULT_BACKEND`` names one, else from django-celery-results in this database.

A result is whatever the shop's task returned: untrusted. It is never unpickled (only JSON, and
msgpack when installed, are decoded), it is bounded in size, and secret-looking keys are masked as
in the task's arguments. A backend is read in a worker thread with short socket timeouts and a
deadline, so a slow or absent backend gives a clear message instead of a stuck page.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import enum
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from celery import Celery
from celery.backends.base import BaseKeyValueStoreBackend
from django.apps import apps
from django.conf import settings
from kombu.exceptions import ContentDisallowed, DecodeError
from kombu.serialization import loads

from dashboard.models import TaskRun
from dashboard.redaction import redact
from tasktrail.config import masked, scrubbed

if TYPE_CHECKING:
    from celery.backends.redis import RedisBackend

# (content type, encoding) of the serializers read; msgpack when its package is installed
DECODERS = [("application/json", "utf-8")]
ACCEPT = ["json"]
try:
    import msgpack  # noqa: F401

    DECODERS.append(("application/x-msgpack", "binary"))
    ACCEPT.append("msgpack")
except ImportError:  # pragma: no cover - msgpack ships with the service
    pass
ACCEPT_TYPES = {content_type for content_type, _ in DECODERS}

# Socket timeouts given to the backend's client, and the page's deadline for the whole read.
SOCKET_TIMEOUT_SECONDS = 2.0
READ_DEADLINE_SECONDS = 3.0
MAX_PAYLOAD_BYTES = 4 * 1024 * 1024  # a larger stored result is not fetched
MAX_SHOWN_CHARS = 64 * 1024  # as the task's arguments
MAX_REASON_CHARS = 300
PICKLE_MARK = b"\x80"  # every pickle of protocol 2 or later starts with it
PICKLE_CONTENT_TYPE = "application/x-python-serialize"

PICKLE_REFUSED = "The result is stored with the pickle serializer, which tasktrail does not read."
NOT_CONFIGURED = (
    "No result backend is configured: set TASKTRAIL_RESULT_BACKEND to the shop's result backend "
    "URL (its Celery result_backend setting, e.g. redis://host:6379/1) to show results here."
)
RPC_UNREADABLE = (
    "The rpc result backend sends each result as a message to the client that started the task "
    "and keeps nothing, so a result cannot be read after the fact. Results show here when the "
    "shop stores them in a backend that keeps them (Redis, a database)."
)


class Outcome(enum.StrEnum):
    SHOWN = "shown"  # status and value
    REFUSED = "refused"  # found, but its value is not read (pickle, too large, unreadable)
    NOT_STORED = "not_stored"
    UNREACHABLE = "unreachable"
    UNSUPPORTED = "unsupported"  # the configured backend cannot be read
    NOT_CONFIGURED = "not_configured"


@dataclass(frozen=True)
class StoredResult:
    outcome: Outcome
    source: str  # where it was read: the backend URL without credentials, or django-celery-results
    message: str = ""
    status: str = ""
    date_done: dt.datetime | None = None
    text: str | None = None  # pretty JSON, redacted, at most MAX_SHOWN_CHARS
    size: int = 0  # characters of the whole shown text
    truncated: bool = False


class _Unusable(Exception):
    """The configured backend cannot be read at all: a missing library, an unsupported kind."""


class _Refused(Exception):
    """A stored result whose value is not shown; the message says why."""


def task_result(*, task_id: str) -> StoredResult | None:
    """The result of a recorded task; None when no such task is recorded (no page, no result)."""
    if not TaskRun.objects.filter(task_id=task_id).exists():
        return None
    url = settings.TASKTRAIL_RESULT_BACKEND.strip()
    if url and url != "django-db":
        return _from_backend(url, task_id)
    if url == "django-db" or apps.is_installed("django_celery_results"):
        return _from_django_db(task_id)
    return StoredResult(Outcome.NOT_CONFIGURED, source="", message=NOT_CONFIGURED)


def shown_url(url: str) -> str:
    """The backend URL as the page may show it: no password, whatever the URL's shape."""
    return masked(url)


# -- the shop's result backend -----------------------------------------------------------------


def _from_backend(url: str, task_id: str) -> StoredResult:
    source = shown_url(url)
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("rpc", "amqp", "amqps"):
        return StoredResult(Outcome.UNSUPPORTED, source, RPC_UNREADABLE)
    # The shop's options (a key prefix, a sentinel master) name where its results are.
    options = json.dumps(settings.TASKTRAIL_RESULT_BACKEND_TRANSPORT_OPTIONS or {}, sort_keys=True)
    future = _executor().submit(_read_payload, url, options, task_id)
    try:
        payload = future.result(timeout=READ_DEADLINE_SECONDS)
    except concurrent.futures.TimeoutError:
        future.cancel()  # still queued behind reads that hang: not started later for nobody
        reason = f"no answer within {READ_DEADLINE_SECONDS:g} s"
        return StoredResult(Outcome.UNREACHABLE, source, f"result backend unreachable: {reason}")
    except _Unusable as exc:
        return StoredResult(Outcome.UNSUPPORTED, source, _masked(str(exc), url))
    except Exception as exc:  # the backend's client: connection, protocol, authentication errors
        reason = _masked(str(exc) or type(exc).__name__, url)
        return StoredResult(Outcome.UNREACHABLE, source, f"result backend unreachable: {reason}")
    if payload is None:
        return StoredResult(
            Outcome.NOT_STORED,
            source,
            "No result stored for this task (not yet, expired, or the task ignores results).",
        )
    if isinstance(payload, int):
        return StoredResult(Outcome.REFUSED, source, _too_large(payload))
    try:
        meta = _decode(payload)
    except _Refused as exc:
        return StoredResult(Outcome.REFUSED, source, str(exc))
    return _shown(source, meta.get("status"), meta.get("date_done"), meta.get("result"))


@functools.cache
def _executor() -> concurrent.futures.ThreadPoolExecutor:
    # Started on first use, so a forking web server's workers each start their own.
    return concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="tt-results")


@functools.lru_cache(maxsize=8)
def _reading_app(url: str, options: str) -> Celery:
    """A Celery app of its own that only reads results: never the current app, JSON only.

    ``options``: the shop's ``result_backend_transport_options``, as JSON."""
    app = Celery("tasktrail-results", set_as_current=False, backend=url, broker="memory://")
    app.conf.update(
        result_backend_transport_options=json.loads(options),
        accept_content=ACCEPT,
        result_accept_content=ACCEPT,
        result_serializer="json",
        redis_socket_timeout=SOCKET_TIMEOUT_SECONDS,
        redis_socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        redis_retry_on_timeout=False,
        result_backend_always_retry=False,
    )
    return app


def _backend(url: str, options: str) -> BaseKeyValueStoreBackend:
    try:
        backend = _reading_app(url, options).backend  # one per thread (Celery: thread-local)
    except ImportError as exc:
        kind = url.split("://", 1)[0].split("+", 1)[0]
        if exc.name == kind:
            raise _Unusable(f"Celery has no result backend named {kind[:50]!r}.") from None
        raise _Unusable(
            f"This result backend needs the Python package {exc.name or 'its client library'}, "
            "which is not installed where tasktrail runs."
        ) from None
    except Exception as exc:  # Celery's ImproperlyConfigured names the missing library
        raise _Unusable(f"This result backend cannot be used: {exc}") from None
    if type(backend).__module__.startswith("celery.backends.database"):
        # Its reader falls back to unpickling rows it cannot decode.
        raise _Unusable(
            "tasktrail does not read Celery's database (db+…) result backend, whose reader "
            "unpickles old rows. Use django-celery-results or a key-value backend such as Redis."
        )
    if not isinstance(backend, BaseKeyValueStoreBackend):
        raise _Unusable(
            f"tasktrail reads key-value result backends (Redis, Memcached, S3, …) and "
            f"django-celery-results, not {type(backend).__name__}."
        )
    redis_backend = _as_redis(backend)
    params = getattr(redis_backend, "connparams", None)  # the client is made from it on first use
    if isinstance(params, dict) and "retry" not in params:
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # One try per read, bounded by the socket timeouts (redis-py retries three times).
        params["retry"] = Retry(NoBackoff(), 0)
    return backend


def _as_redis(backend: BaseKeyValueStoreBackend) -> RedisBackend | None:
    try:
        from celery.backends.redis import RedisBackend
    except ImportError:  # pragma: no cover - redis ships with the service
        return None
    return backend if isinstance(backend, RedisBackend) else None


def _read_payload(url: str, options: str, task_id: str) -> bytes | str | int | None:
    """The stored meta as the backend keeps it; its size instead when larger than allowed."""
    backend = _backend(url, options)
    key = backend.get_key_for_task(task_id)
    redis_backend = _as_redis(backend)
    if redis_backend is not None:  # measure before fetching
        size = int(redis_backend.client.strlen(key))
        if size > MAX_PAYLOAD_BYTES:
            return size
    payload: bytes | str | None = backend.get(key)
    if payload is not None and len(payload) > MAX_PAYLOAD_BYTES:
        return len(payload)
    return payload


def _decode(payload: bytes | str) -> dict[str, Any]:
    raw = payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else payload
    if raw[:1] == PICKLE_MARK:
        raise _Refused(PICKLE_REFUSED)
    for content_type, encoding in DECODERS:
        try:
            meta = loads(raw, content_type, encoding, accept=ACCEPT_TYPES)
        except (ContentDisallowed, DecodeError, ValueError, TypeError, RecursionError):
            continue
        if isinstance(meta, dict) and "status" in meta:
            return meta
    raise _Refused("The stored result is neither JSON nor msgpack; tasktrail does not read it.")


# -- django-celery-results ---------------------------------------------------------------------


def django_db_status(*, task_id: str) -> Mapping[str, Any] | None:
    """``status`` and ``date_done`` of the task's django-celery-results row, if any; the result
    itself is not read."""
    from django_celery_results.models import TaskResult

    return TaskResult.objects.filter(task_id=task_id).values("status", "date_done").first()


def _from_django_db(task_id: str) -> StoredResult:
    from django_celery_results.models import TaskResult

    source = "django-celery-results"
    row = (
        TaskResult.objects.filter(task_id=task_id)
        .values("status", "date_done", "result", "content_type")
        .first()
    )
    if row is None:
        return StoredResult(
            Outcome.NOT_STORED,
            source,
            "No result stored in django-celery-results (yet, or the task ignores results). If "
            "the shop keeps results in another result backend, set TASKTRAIL_RESULT_BACKEND to "
            "its URL.",
        )
    status, date_done = row["status"], row["date_done"]
    content_type, stored = row["content_type"] or "", row["result"]
    if content_type == PICKLE_CONTENT_TYPE:
        return _refused(source, status, date_done, PICKLE_REFUSED)
    if content_type != "application/json":
        message = f"The result is stored as {content_type[:100]}, which tasktrail does not read."
        return _refused(source, status, date_done, message)
    if stored is not None and len(stored) > MAX_PAYLOAD_BYTES:
        return _refused(source, status, date_done, _too_large(len(stored)))
    try:
        value = None if stored is None else json.loads(stored)
    except (ValueError, RecursionError):
        return _refused(source, status, date_done, "The stored result is not valid JSON.")
    return _shown(source, status, date_done, value)


# -- shaping -------------------------------------------------------------------------------------


def _shown(source: str, status: Any, date_done: Any, value: Any) -> StoredResult:
    text = _pretty(redact(value, settings.TASKTRAIL_REDACT_KEYS))
    return StoredResult(
        Outcome.SHOWN,
        source,
        status=str(status or "")[:50],
        date_done=_when(date_done),
        text=text[:MAX_SHOWN_CHARS],
        size=len(text),
        truncated=len(text) > MAX_SHOWN_CHARS,
    )


def _refused(source: str, status: Any, date_done: Any, message: str) -> StoredResult:
    return StoredResult(
        Outcome.REFUSED, source, message, status=str(status or "")[:50], date_done=_when(date_done)
    )


def _pretty(value: Any) -> str:
    """Pretty JSON, always valid UTF-8; values JSON has no form for (dates, bytes) as text."""
    try:
        text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)[: MAX_SHOWN_CHARS + 1]
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _when(value: Any) -> dt.datetime | None:
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, dt.datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _too_large(size: int) -> str:
    return (
        f"The stored result is {size:,} bytes, more than tasktrail reads "
        f"({MAX_PAYLOAD_BYTES // (1024 * 1024)} MiB)."
    )


def _masked(reason: str, url: str) -> str:
    """An error's text without the backend's credentials, bounded."""
    return scrubbed(reason, url)[:MAX_REASON_CHARS]

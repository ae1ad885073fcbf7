"""Queues on RabbitMQ (AMQP 0-9-1), through kombu's connection to the shop's broker.

Depth (messages ready) and consumers come from a passive ``queue.declare`` per queue: it creates
nothing, and for a queue that does not exist the broker answers NOT_FOUND *and closes the channel*,
so each such queue costs a fresh channel and is reported absent. Connecting is bounded
(``workers.control``: 2 s per attempt, one reconnect; 5 s socket reads and writes).

With the management API (``TASKTRAIL_RABBITMQ_API``, e.g. ``http://user:pass@host:15672/api/``)
the reader also gets messages unacknowledged, idle-since and the list of queues, in one HTTP
request for the broker's virtual host. Its figures lag the broker by its stats interval (5 s by
default), so depth and consumers still come from the passive declares.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final
from urllib.parse import quote, urlsplit, urlunsplit

from tasktrail.config import masked, scrubbed
from workers.broker import (
    IDLE_SINCE,
    LIST,
    OLDEST_PUBLISHED,
    UNACKED,
    BrokerReading,
    QueueReading,
    internal_queue,
)

API_TIMEOUT: Final = 5.0
API_MAX_BYTES: Final = 32 * 1024 * 1024  # a broker with very many queues: refuse, do not hang
API_COLUMNS: Final = "name,messages_ready,messages_unacknowledged,consumers,idle_since"


@dataclass(frozen=True)
class ApiQueue:
    name: str
    ready: int | None
    unacked: int | None
    consumers: int | None
    idle_since: float | None


class ManagementApi:
    """RabbitMQ's management API for one virtual host; the URL's credentials go in a header."""

    def __init__(self, base: str, vhost: str) -> None:
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https"):
            raise ApiError(f"TASKTRAIL_RABBITMQ_API is not an http(s) URL: {masked(base)}")
        self.where = masked(base)
        self.secret_url = base
        self.auth = ""
        if parts.username is not None:
            pair = f"{_unquote(parts.username)}:{_unquote(parts.password or '')}"
            self.auth = "Basic " + base64.b64encode(pair.encode()).decode()
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port:
            netloc += f":{parts.port}"
        path = parts.path if parts.path.endswith("/") else parts.path + "/"
        self.url = urlunsplit(
            (parts.scheme, netloc, f"{path}queues/{quote(vhost, safe='')}", "", "")
        )

    def queues(self) -> dict[str, ApiQueue]:
        request = urllib.request.Request(f"{self.url}?columns={API_COLUMNS}")  # noqa: S310 (http)
        if self.auth:
            request.add_header("Authorization", self.auth)
        try:
            with urllib.request.urlopen(request, timeout=API_TIMEOUT) as response:  # noqa: S310
                body = response.read(API_MAX_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise ApiError(f"the management API at {self.where} answered {exc.code}") from None
        except (OSError, ValueError) as exc:
            text = scrubbed(f"{type(exc).__name__}: {exc}", self.secret_url)
            raise ApiError(f"the management API at {self.where} did not answer: {text}") from None
        if len(body) > API_MAX_BYTES:
            raise ApiError(f"the management API at {self.where} sent over {API_MAX_BYTES} bytes")
        try:
            rows = json.loads(body)
        except ValueError:
            raise ApiError(f"the management API at {self.where} sent no JSON") from None
        if not isinstance(rows, list):
            raise ApiError(f"the management API at {self.where} sent no list of queues")
        out = {}
        for row in rows:
            if isinstance(row, dict) and isinstance(row.get("name"), str):
                name = row["name"]
                out[name] = ApiQueue(
                    name=name,
                    ready=_count(row.get("messages_ready")),
                    unacked=_count(row.get("messages_unacknowledged")),
                    consumers=_count(row.get("consumers")),
                    idle_since=parse_idle_since(row.get("idle_since")),
                )
        return out


class ApiError(Exception):
    """The management API could not be read; the text carries no credentials."""


def _unquote(text: str) -> str:
    from urllib.parse import unquote

    return unquote(text)


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def parse_idle_since(value: Any) -> float | None:
    """RabbitMQ writes ``2026-12-07T07:22:00.123+00:00`` (3.13+) or ``2026-12-07 7:22:00`` (UTC,
    older); absent while the queue is busy."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    for attempt in (text, text.replace(" ", "T", 1)):
        try:
            moment = dt.datetime.fromisoformat(attempt)
        except ValueError:
            continue
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        return moment.timestamp()
    try:  # an hour without its leading zero ("7:22:00")
        moment = dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    return moment.timestamp()


class AmqpReader:
    """The shop's RabbitMQ: one kombu connection kept between checks, reopened after an error."""

    kind = "amqp"

    def __init__(self, url: str, options: Mapping[str, Any] | None = None, api: str = "") -> None:
        self.url = url
        self.options = dict(options or {})
        self.where = masked(url)
        self.api_base = api
        self.api_error = ""  # the latest management API failure, for the page
        self._connection: Any = None
        self._vhost: str | None = None

    @property
    def unknown(self) -> tuple[str, ...]:
        if self.api_base:
            return (OLDEST_PUBLISHED,)
        return (UNACKED, IDLE_SINCE, OLDEST_PUBLISHED, LIST)

    def connection(self) -> Any:
        if self._connection is None:
            from kombu import Connection

            from workers.control import CONNECT_TIMEOUT, transport_options

            options = transport_options(self.url, self.options)
            options.pop("confirm_publish", None)  # this reader publishes nothing
            connection = Connection(
                self.url, transport_options=options, connect_timeout=CONNECT_TIMEOUT
            )
            try:
                connection.ensure_connection(max_retries=1, interval_start=0, timeout=4)
            except Exception:
                connection.release()
                raise
            self._connection = connection
            self._vhost = connection.virtual_host or "/"
        return self._connection

    def _error(self, exc: BaseException) -> str:
        self.close()
        return scrubbed(f"{type(exc).__name__}: {exc}", self.url)

    def _api(self) -> dict[str, ApiQueue] | None:
        if not self.api_base:
            return None
        if self._vhost is None:
            from kombu import Connection

            self._vhost = Connection(self.url).virtual_host or "/"
        try:
            found = ManagementApi(self.api_base, self._vhost).queues()
        except ApiError as exc:
            self.api_error = str(exc)
            return None
        self.api_error = ""
        return found

    def list_queues(self) -> list[str] | None:
        found = self._api()
        if found is None:
            return None
        return sorted(name for name in found if not internal_queue(name))

    def read(self, names: Sequence[str]) -> BrokerReading:
        api = self._api() or {}
        queues: dict[str, QueueReading] = {}
        error = ""
        try:
            connection = self.connection()
            channel = None
            for name in names:
                if channel is None:
                    channel = connection.channel()
                try:
                    _, ready, consumers = channel.queue_declare(queue=name, passive=True)
                except connection.channel_errors:
                    # NOT_FOUND (or ACCESS_REFUSED) closed the channel: the next queue opens one
                    queues[name] = QueueReading(name, absent=True)
                    channel = None
                    continue
                queues[name] = QueueReading(name, depth=int(ready), consumers=int(consumers))
            if channel is not None:
                channel.close()
        except Exception as exc:  # the broker went away: what was read stays, the rest unknown
            error = self._error(exc)
        for name in names:
            reading = queues.get(name) or QueueReading(name)
            listed = api.get(name)
            if listed is not None:
                reading = replace(
                    reading,
                    unacked=listed.unacked,
                    idle_since=listed.idle_since,
                    absent=False if reading.depth is not None else reading.absent,
                )
            queues[name] = reading
        return BrokerReading(
            kind=self.kind,
            where=self.where,
            queues=queues,
            unknown=self.unknown,
            error=error,
            notes=(self.api_error,) if self.api_error else (),
        )

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):  # a broken connection: nothing left to close
                connection.release()

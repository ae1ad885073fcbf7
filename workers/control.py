"""The only module that asks Celery to do something: publish a retry, revoke, terminate.

Called by ``dashboard.services`` after its permission and state checks have committed.

Every call goes to the **shop's** broker (``TASKTRAIL_BROKER_URL`` with
``TASKTRAIL_BROKER_TRANSPORT_OPTIONS``) through a Celery app of its own, made once per process: it
needs none of the shop's task code (a retry is sent by task name) and shares nothing with the
service's own app, whose broker is the event stream's Redis.

A web worker never waits long on a broker that is down: each connection attempt (TCP connect and
the broker's handshake) is bounded by ``CONNECT_TIMEOUT``, each call reconnects at most
``RECONNECTS`` times, and the control app's connections bound kombu's reconnect loop (which a remote
control broadcast would otherwise retry forever). A call that cannot reach the broker raises
``BrokerError``, whose text names the broker without its passwords (every URL of a failover list).

An operator's retry **links** to the original trace rather than continuing it: it is published
under a span of the operator's own request (so the retry and everything it causes share that
request's trace id) carrying an OpenTelemetry span link to the original task's last run span. See
the README ("Tracing") for why.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

from celery import Celery
from celery.app.amqp import AMQP
from django.conf import settings
from kombu import Connection
from kombu.exceptions import EncodeError, OperationalError
from opentelemetry import trace

from tasktrail.config import masked, scrubbed
from tasktrail.recorder import RETRY_OF_HEADER
from tasktrail.tracing.context import TraceParent

_tracer = trace.get_tracer("tasktrail.control")

# Seconds for one connection attempt: TCP connect plus the broker's handshake (AMQP), or the
# connect (Redis). Socket reads and writes on an open connection get IO_TIMEOUT.
CONNECT_TIMEOUT: Final = 2.0
IO_TIMEOUT: Final = 5.0
# How often one call reconnects after a connection error before it gives up, and how soon.
RECONNECTS: Final = 1
_RETRY_POLICY: Final = {
    "max_retries": RECONNECTS,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 0.5,
}
_REDIS_SCHEMES: Final = ("redis", "rediss", "valkey", "valkeys", "sentinel", "unix", "socket")


class BrokerError(Exception):
    """A Celery call did not reach the shop's broker; the text carries no credentials.

    ``unreachable``: the connection failed (the next call would wait again), as opposed to a
    broker that answered with a refusal (no such queue) or a message that could not be encoded."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


class _BoundedConnection(Connection):
    """kombu's ``ensure`` reconnects forever unless told otherwise, and the remote control's
    publish never tells it: bound it here, for every connection the control app opens."""

    def ensure(self, obj: Any, fun: Any, errback: Any = None, max_retries: int | None = None,
               *args: Any, **kwargs: Any) -> Any:  # fmt: skip
        bounded = RECONNECTS if max_retries is None else min(max_retries, RECONNECTS)
        return super().ensure(obj, fun, errback, bounded, *args, **kwargs)


class _ControlAMQP(AMQP):
    Connection = _BoundedConnection


def transport_options(url: str, shop_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The shop's transport options, with the connection bounds the control app needs.

    The shop's own socket timeouts are kept; its retry settings are not (they suit a worker that
    may wait for its broker, not a web request)."""
    options = dict(shop_options or {})
    options.update(_RETRY_POLICY, connect_retries_timeout=CONNECT_TIMEOUT * (RECONNECTS + 1))
    scheme = urlsplit(url).scheme.split("+")[-1].lower()
    if scheme in _REDIS_SCHEMES:
        options.setdefault("socket_connect_timeout", CONNECT_TIMEOUT)
        options.setdefault("socket_timeout", IO_TIMEOUT)
    elif scheme in ("amqp", "amqps", "pyamqp"):
        options.setdefault("read_timeout", IO_TIMEOUT)
        options.setdefault("write_timeout", IO_TIMEOUT)
        # The broker confirms each retry it took in: "published" means the broker has it.
        options.setdefault("confirm_publish", True)
    return options


def make_app(url: str, shop_options: Mapping[str, Any] | None = None) -> Celery:
    """A Celery app that only publishes to the broker at ``url``."""
    app = Celery(
        "tasktrail-control", broker=url, set_as_current=False, amqp=_ControlAMQP, fixups=[]
    )
    app.conf.update(
        broker_transport_options=transport_options(url, shop_options),
        broker_connection_timeout=CONNECT_TIMEOUT,
        task_serializer="json",
        accept_content=["json"],
        task_publish_retry=True,
        task_publish_retry_policy=dict(_RETRY_POLICY),
        # Revoke expects no reply; the worker probe's inspect() waits about a second for replies
        # in a reply queue this app declares, where a reply older than a minute serves nobody.
        control_queue_ttl=60.0,
    )
    return app


_apps: dict[tuple[int, str, str], Celery] = {}
_apps_lock = threading.Lock()


def control_app() -> Celery:
    """The control app for the configured broker, one per process (a forked child makes its own:
    connections do not survive a fork)."""
    url = settings.TASKTRAIL_BROKER_URL
    options = settings.TASKTRAIL_BROKER_TRANSPORT_OPTIONS or {}
    key = (os.getpid(), url, json.dumps(options, sort_keys=True, default=str))
    with _apps_lock:
        app = _apps.get(key)
        if app is None:
            app = _apps[key] = make_app(url, options)
    return app


def broker_name(url: str | None = None) -> str:
    """The broker's URL as it may be shown or logged: without its passwords."""
    return masked(url if url is not None else settings.TASKTRAIL_BROKER_URL)


def mask(text: str, url: str | None = None) -> str:
    """``text`` with the broker URL's passwords taken out, wherever an error repeated them."""
    return scrubbed(text, url if url is not None else settings.TASKTRAIL_BROKER_URL)


def _broker_error(exc: BaseException, app: Celery, queue: str | None = None) -> BrokerError:
    url = str(app.conf.broker_url or "")
    name = broker_name(url)
    if queue and "NO_ROUTE" in str(exc):
        return BrokerError(f"broker {name} has no queue {queue!r} (no worker has declared it)")
    detail = mask(f"{type(exc).__name__}: {exc}", url) if str(exc) else type(exc).__name__
    if isinstance(exc, EncodeError):
        return BrokerError(f"the arguments could not be encoded as JSON ({detail})")
    if isinstance(exc, OperationalError | OSError):
        return BrokerError(f"broker {name} unreachable ({detail})", unreachable=True)
    return BrokerError(f"broker {name} refused it ({detail})")


def publish_retry(
    *,
    name: str,
    args: list[Any],
    kwargs: dict[str, Any],
    queue: str | None,
    retry_of: str,
    task_id: str | None = None,
    original_trace: TraceParent | None = None,
    app: Celery | None = None,
) -> str:
    """Publish ``name`` again with the recorded arguments, as a new task id linked to the old.

    ``original_trace``: the old task's trace id, the span id of its last run span (zeros when none
    ran) and whether it was sampled; the retry's span links to it. Raises ``BrokerError`` when the
    broker did not take the message.
    """
    app = app or control_app()
    new_id = task_id or str(uuid.uuid4())
    with _tracer.start_as_current_span(
        f"operator_retry/{name}",
        kind=trace.SpanKind.INTERNAL,
        links=_links_to(original_trace, retry_of),
        attributes={
            "celery.task_name": name,
            "messaging.message.id": new_id,
            "tasktrail.retry_of": retry_of,
        },
    ):
        try:
            app.send_task(
                name,
                args=args,
                kwargs=kwargs,
                queue=queue or None,
                task_id=new_id,
                headers={RETRY_OF_HEADER: retry_of},
                # The shop's workers declared their queues, with arguments this app does not know
                # (a quorum queue, a priority): declaring here could conflict. Unroutable instead
                # comes back as an error (AMQP), not a message silently dropped.
                declare=[],
                mandatory=True,
                confirm_timeout=IO_TIMEOUT,
            )
        except Exception as exc:
            raise _broker_error(exc, app, queue) from exc
    return new_id


def _links_to(original: TraceParent | None, retry_of: str) -> list[trace.Link]:
    if original is None:
        return []
    context = trace.SpanContext(
        trace_id=int(original.trace_id, 16),
        span_id=int(original.span_id, 16),
        is_remote=True,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED if original.sampled else 0),
    )
    # Attributes keep the link even without a span id (a task that never ran): the SDK drops a
    # link whose span context is invalid and that carries nothing else.
    return [
        trace.Link(context, {"tasktrail.link": "operator retry of", "tasktrail.task_id": retry_of})
    ]


def broadcast_revoke(task_ids: Sequence[str], *, app: Celery | None = None) -> None:
    """Tell running workers not to start these tasks. Raises ``BrokerError``."""
    _revoke(app or control_app(), list(task_ids))


def terminate(task_id: str, signal: str = "SIGTERM", *, app: Celery | None = None) -> None:
    """Stop a running task: its pool process gets ``signal``. Raises ``BrokerError``."""
    _revoke(app or control_app(), task_id, terminate=True, signal=signal)


def _revoke(app: Celery, task_id: str | list[str], **options: Any) -> None:
    # A broadcast over the remote control's fanout exchange (AMQP fanout; Redis PUBLISH on the
    # prefixed channel): workers running now get it, nobody answers.
    try:
        with app.connection_for_write() as conn:
            app.control.revoke(task_id, connection=conn, **options)
    except Exception as exc:
        raise _broker_error(exc, app) from exc


# -- queue pauses and purges (dashboard.services_queues) -------------------------------------------

# Seconds a pause or resume waits for the workers' answers: each answers at once (the change
# itself runs on its consumer's thread), and one that does not converges from the shared set.
QUEUE_REPLY_TIMEOUT: Final = 1.0


def broadcast_queue_pause(
    queue: str, *, pause: bool, app: Celery | None = None, timeout: float = QUEUE_REPLY_TIMEOUT
) -> dict[str, str]:
    """Tell running workers that ``queue`` is paused (or resumed), through the commands that
    ``tasktrail.queue_pauses`` registers in them. Per worker that answered within ``timeout``: its
    answer ("stopping", "not consuming", "resuming", "not held", or an error such as a worker
    without those commands). Raises ``BrokerError``."""
    from tasktrail.queue_pauses import PAUSE_COMMAND, RESUME_COMMAND

    app = app or control_app()
    try:
        with app.connection_for_write() as conn:
            replies = app.control.broadcast(
                PAUSE_COMMAND if pause else RESUME_COMMAND,
                arguments={"queue": queue},
                reply=True,
                timeout=timeout,
                connection=conn,
            )
    except Exception as exc:
        raise _broker_error(exc, app) from exc
    answers: dict[str, str] = {}
    for reply in replies or []:
        if not isinstance(reply, dict):
            continue
        for host, answer in reply.items():
            if isinstance(answer, dict):
                text = answer.get("ok") if "ok" in answer else f"error: {answer.get('error')}"
            else:
                text = f"error: {answer!r}"
            answers[str(host)[:255]] = mask(str(text))[:200]
    return answers


def purge_queue(queue: str, *, app: Celery | None = None) -> int:
    """Delete every message waiting in ``queue`` on the shop's broker; how many there were.

    kombu's ``queue_purge`` on a channel of the control app's connection: on Redis it empties the
    list and its priority sub-lists under the transport's ``global_keyprefix``; on RabbitMQ it is
    the broker's own purge (a queue that does not exist is an error). Messages a worker already
    fetched, and ETA tasks a worker holds, are not waiting there and are not purged. Raises
    ``BrokerError``."""
    app = app or control_app()
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=RECONNECTS)
            channel: Any = conn.default_channel
            count = channel.queue_purge(queue)
    except Exception as exc:
        if "NOT_FOUND" in str(exc):
            name = broker_name(str(app.conf.broker_url or ""))
            raise BrokerError(f"broker {name} has no queue {queue!r}") from exc
        raise _broker_error(exc, app, queue) from exc
    return int(count or 0)

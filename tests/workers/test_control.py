"""The control app: where it sends, with what bounds, and what its errors say."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator

import pytest
import redis
from django.conf import settings
from kombu import Connection

from workers import control

SECRET = "s3cret-pw"


@pytest.fixture
def stream() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


def test_the_app_follows_the_settings_and_is_made_once_per_broker(settings):
    settings.TASKTRAIL_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672//"
    settings.TASKTRAIL_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": False}
    app = control.control_app()
    assert control.control_app() is app
    assert app.conf.broker_url == "amqp://guest:guest@127.0.0.1:5672//"
    assert app.conf.broker_transport_options["confirm_publish"] is False  # the shop's choice kept
    assert app.conf.task_serializer == "json"
    settings.TASKTRAIL_BROKER_TRANSPORT_OPTIONS = {}
    assert control.control_app() is not app


def test_transport_options_keep_the_shops_and_bound_the_waits():
    redis_options = control.transport_options(
        "redis://h:6379/0", {"global_keyprefix": "shop:", "socket_timeout": 30, "max_retries": None}
    )
    assert redis_options["global_keyprefix"] == "shop:"
    assert redis_options["socket_timeout"] == 30
    assert redis_options["socket_connect_timeout"] == control.CONNECT_TIMEOUT
    assert redis_options["max_retries"] == control.RECONNECTS  # never "retry forever" here
    amqp_options = control.transport_options("amqp://h//", None)
    assert amqp_options["confirm_publish"] is True
    assert "socket_connect_timeout" not in amqp_options


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{SECRET}@127.0.0.1:1/0",
        f"amqp://shop:{SECRET}@127.0.0.1:1//",
        f"amqp://shop:{SECRET.replace('-', '%2D')}@127.0.0.1:1//",
        # A cluster's failover list: the second URL's password is masked too.
        f"amqp://shop:{SECRET}@127.0.0.1:1//;amqp://shop:{SECRET}-2@127.0.0.1:2//",
    ],
)
def test_an_unreachable_broker_raises_an_error_without_the_password(url):
    app = control.make_app(url)
    calls = [
        lambda: control.publish_retry(
            name="shop.add", args=[1], kwargs={}, queue="q", retry_of="old", app=app
        ),
        lambda: control.broadcast_revoke(["t1"], app=app),
        lambda: control.terminate("t1", app=app),
    ]
    for call in calls:
        with pytest.raises(control.BrokerError) as raised:
            call()
        assert raised.value.unreachable
        assert "unreachable" in str(raised.value) and "127.0.0.1:1" in str(raised.value)
        assert SECRET not in str(raised.value) and "%2D" not in str(raised.value)


def test_mask_takes_the_password_out_wherever_an_error_repeats_it():
    url = f"amqp://shop:{SECRET}@broker.example:5672/vhost"
    text = control.mask(f"could not log in to {url} with {SECRET}", url)
    assert SECRET not in text
    assert "amqp://shop:**@broker.example:5672/vhost" in text


def test_arguments_that_do_not_encode_are_not_called_unreachable(stream):
    app = control.make_app(settings.REDIS_URL)
    with pytest.raises(control.BrokerError) as raised:
        control.publish_retry(
            name="shop.add", args=[object()], kwargs={}, queue="q", retry_of="old", app=app
        )
    assert not raised.value.unreachable
    assert "encoded as JSON" in str(raised.value)


def test_a_retry_on_a_prefixed_redis_broker_lands_under_the_prefix(stream):
    prefix, queue = f"shop-{uuid.uuid4().hex[:8]}:", f"ctl-{uuid.uuid4().hex[:8]}"
    app = control.make_app(settings.REDIS_URL, {"global_keyprefix": prefix})
    try:
        new_id = control.publish_retry(
            name="shop.add", args=[1, 2], kwargs={}, queue=queue, retry_of="old", app=app
        )
        [message] = [json.loads(m) for m in stream.lrange(f"{prefix}{queue}", 0, -1)]
        assert message["headers"]["id"] == new_id
        assert message["headers"]["task"] == "shop.add"
        assert message["headers"]["tasktrail_retry_of"] == "old"
    finally:
        stream.delete(*stream.scan_iter(match=f"{prefix}*", count=1000), "__nothing__")


def rabbit_or_skip() -> str:
    url = "amqp://guest:guest@127.0.0.1:5672//"
    try:
        with Connection(url, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=4)
    except Exception as exc:
        pytest.skip(f"RabbitMQ at {url} unreachable ({type(exc).__name__}: {exc})")
    return url


def test_a_retry_to_a_queue_rabbitmq_does_not_have_fails_instead_of_vanishing():
    app = control.make_app(rabbit_or_skip())
    queue = f"ctl-missing-{uuid.uuid4().hex[:8]}"
    with pytest.raises(control.BrokerError) as raised:
        control.publish_retry(
            name="shop.add", args=[1], kwargs={}, queue=queue, retry_of="old", app=app
        )
    assert f"has no queue {queue!r}" in str(raised.value)
    assert not raised.value.unreachable


class _HangsUp:
    """A broker that accepts each connection and closes it at once, counting them."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:  # closed: the test is over
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.listener.close()


@pytest.mark.parametrize("scheme", ["amqp", "redis"])
def test_a_broker_that_hangs_up_at_once_is_given_up_on_after_a_bounded_number_of_tries(scheme):
    broker = _HangsUp()
    url = f"amqp://shop:{SECRET}@127.0.0.1:{broker.port}//"
    if scheme == "redis":
        url = f"redis://:{SECRET}@127.0.0.1:{broker.port}/0"
    app = control.make_app(url)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            control.terminate("t1", app=app)
        except BaseException as exc:
            errors.append(exc)

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    caller.join(120)  # only a guard against an endless reconnect loop: it takes seconds
    broker.close()
    assert not caller.is_alive(), f"still reconnecting after {broker.accepted} connections"
    [error] = errors
    assert isinstance(error, control.BrokerError) and error.unreachable, error
    assert SECRET not in str(error)
    assert 1 <= broker.accepted <= 2 * (control.RECONNECTS + 1)

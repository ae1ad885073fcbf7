"""``tasktrail.install(app)`` as a shop calls it: before its app is configured, with a RabbitMQ
broker, with bad settings, twice. Real Redis for the stream, real RabbitMQ for the amqp broker."""

from __future__ import annotations

import json
import socket
import uuid
from typing import Any

import pytest
import redis
from celery import Celery
from django.conf import settings

import tasktrail
from tasktrail import recorder
from tasktrail.events import decode_entry

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"
pytestmark = pytest.mark.usefixtures("not_installed")


def recorded(client: redis.Redis, stream: str = "") -> list[dict[str, Any]]:
    recorder.flush()
    events: list[dict[str, Any]] = []
    for _, fields in client.xrange(stream or settings.TASKTRAIL_STREAM):
        events += decode_entry(fields)[0]
    return events


def shop_app(name: str = "shop") -> Celery:
    app = Celery(name, set_as_current=False)

    @app.task(name=f"{name}.add", shared=False)
    def add(x: int, y: int, pin: str = "") -> int:
        return x + y

    return app


class RedisConfig:
    broker_url = settings.REDIS_URL
    task_default_queue = "default"  # a queue the redis_client fixture empties


def rabbitmq_or_skip() -> None:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
    except OSError:
        pytest.skip("RabbitMQ is not reachable at 127.0.0.1:5672")


def test_installed_before_the_app_is_configured_then_records(redis_client, monkeypatch):
    monkeypatch.setenv("TASKTRAIL_STREAM", settings.TASKTRAIL_STREAM)
    app = shop_app()
    tasktrail.install(app)  # no broker yet: nothing is read now
    assert recorder._installation is not None and not recorder._installation.resolved
    app.config_from_object(RedisConfig)

    result = app.tasks["shop.add"].delay(2, 3)

    [published] = [e for e in recorded(redis_client) if e["task_id"] == result.id]
    assert published["kind"] == "published"
    assert published["name"] == "shop.add"
    assert json.loads(published["args"]) == [2, 3]
    config = recorder.config()
    assert config is not None and config.recorder_url == settings.REDIS_URL


def test_an_amqp_broker_without_a_recorder_url_logs_one_masked_error(redis_client, tasktrail_log):
    rabbitmq_or_skip()
    queue = f"tasktrail-test-{uuid.uuid4().hex[:8]}"
    app = shop_app()
    tasktrail.install(app)
    app.conf.broker_url = RABBITMQ_URL
    # Publisher confirms: each publish returns once RabbitMQ has queued it, so the count is exact.
    app.conf.broker_transport_options = {"confirm_publish": True}
    app.conf.task_default_queue = queue
    try:
        first = app.tasks["shop.add"].delay(1, 2)  # the publish itself still succeeds
        second = app.tasks["shop.add"].delay(3, 4)
        with app.connection_for_write() as connection:
            waiting = connection.default_channel.queue_declare(queue, passive=True).message_count
    finally:
        with app.connection_for_write() as connection:
            connection.default_channel.queue_delete(queue)
    assert waiting == 2
    [error] = tasktrail_log.errors()  # one line, not one per publish
    assert "TASKTRAIL_RECORDER_URL" in error and "amqp://guest:**@127.0.0.1:5672//" in error
    assert "guest:guest" not in tasktrail_log.text
    assert recorder.config() is None
    ids = {e["task_id"] for e in recorded(redis_client)}
    assert first.id not in ids and second.id not in ids


def test_a_password_never_reaches_the_log(tasktrail_log):
    app = shop_app()
    tasktrail.install(app)
    app.conf.broker_url = "sentinel://shop:s3cr3t-pw@10.0.0.1:26379;sentinel://shop:s3cr3t-pw@b//"
    assert recorder.current() is None
    assert len(tasktrail_log.errors()) == 1
    assert "s3cr3t-pw" not in tasktrail_log.text
    assert "sentinel://shop:**@10.0.0.1:26379" in tasktrail_log.errors()[0]


def test_a_bad_number_turns_recording_off_without_raising(redis_client, tasktrail_log, monkeypatch):
    monkeypatch.setenv("TASKTRAIL_MAX_ARGS_BYTES", "64k")
    app = shop_app()
    tasktrail.install(app)
    app.config_from_object(RedisConfig)

    result = app.tasks["shop.add"].delay(1, 1)

    assert redis_client.llen("default") == 1  # published all the same
    [error] = tasktrail_log.errors()
    assert "TASKTRAIL_MAX_ARGS_BYTES" in error and "'64k'" in error
    assert result.id not in {e["task_id"] for e in recorded(redis_client)}


def test_a_second_app_is_refused_and_the_same_app_again_changes_nothing(tasktrail_log):
    first, second = shop_app("first"), shop_app("second")
    tasktrail.install(first)
    tasktrail.install(first)
    assert tasktrail_log.errors() == []
    tasktrail.install(second)
    [error] = tasktrail_log.errors()
    assert "'first'" in error and "'second'" in error and "ignored" in error
    assert recorder.installed_app() is first


def test_environment_variables_reach_the_recorder(redis_client, monkeypatch):
    stream = settings.TASKTRAIL_STREAM + ":env"  # emptied by the redis_client fixture too
    monkeypatch.setenv("TASKTRAIL_RECORDER_URL", settings.REDIS_URL)
    monkeypatch.setenv("TASKTRAIL_STREAM", stream)
    monkeypatch.setenv("TASKTRAIL_MAX_ARGS_BYTES", "10")
    monkeypatch.setenv("TASKTRAIL_REDACT_KEYS", "pin, card")
    app = shop_app()
    app.conf.broker_url = "memory://"  # not Redis: the events go to TASKTRAIL_RECORDER_URL
    tasktrail.install(app)

    result = app.tasks["shop.add"].delay(1, 2, pin="12345678901")

    config = recorder.config()
    assert config is not None
    assert (config.recorder_url, config.stream) == (settings.REDIS_URL, stream)
    assert (config.max_args_bytes, config.secret_keys) == (10, ("pin", "card"))
    [published] = [e for e in recorded(redis_client, stream) if e["task_id"] == result.id]
    assert "too large" in published["args_dropped"]


def test_options_given_to_install_win_over_the_environment(redis_client, monkeypatch):
    monkeypatch.setenv("TASKTRAIL_STREAM", "tasktrail:not-this-one")
    monkeypatch.setenv("TASKTRAIL_MAX_ARGS_BYTES", "not a number")  # overridden: never read
    app = shop_app()
    tasktrail.install(
        app,
        recorder_url=settings.REDIS_URL,
        stream=settings.TASKTRAIL_STREAM,
        max_args_bytes=100,
        secret_keys=["pin"],
    )
    config = recorder.config()
    assert config is not None
    assert (config.stream, config.max_args_bytes, config.secret_keys) == (
        settings.TASKTRAIL_STREAM,
        100,
        ("pin",),
    )

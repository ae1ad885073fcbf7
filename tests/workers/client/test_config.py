"""``tasktrail.config.resolve``: where each setting comes from; errors, credentials masked."""

from __future__ import annotations

import pytest
from celery import Celery

from tasktrail.config import ClientConfig, ConfigError, masked, resolve, scrubbed
from tasktrail.events import DEFAULT_MAX_ARGS_BYTES
from tasktrail.task_inputs import DEFAULT_SECRET_KEYS


def app_with(broker: object) -> Celery:
    app = Celery("shop", set_as_current=False)
    app.conf.broker_url = broker
    return app


@pytest.fixture(autouse=True)
def _no_broker_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)  # Celery reads it before broker_url


def test_defaults_with_a_redis_broker():
    config = resolve(app_with("redis://:pw@cache:6379/2"), environ={})
    assert config == ClientConfig(
        recorder_url="redis://:pw@cache:6379/2",
        stream="tasktrail:events",
        max_args_bytes=DEFAULT_MAX_ARGS_BYTES,
        secret_keys=DEFAULT_SECRET_KEYS,
    )
    assert "pw" not in repr(config)


@pytest.mark.parametrize(
    ("broker", "used"),
    [
        ("rediss://cache:6380/0", "rediss://cache:6380/0"),
        ("unix:///run/redis.sock?db=1", "unix:///run/redis.sock?db=1"),
        ("valkey://cache:6379/0", "redis://cache:6379/0"),
        ("valkeys://cache:6379/0", "rediss://cache:6379/0"),
        ("redis+socket:///run/redis.sock", "unix:///run/redis.sock"),
        ("redis://a:6379/0;redis://b:6379/0", "redis://a:6379/0"),  # kombu's failover list
        (["redis://a:6379/0", "redis://b:6379/0"], "redis://a:6379/0"),
    ],
)
def test_redis_brokers_kombu_and_valkey_spell(broker, used):
    assert resolve(app_with(broker), environ={}).recorder_url == used


@pytest.mark.parametrize(
    "broker",
    ["amqp://shop:hunter2@mq//", "sentinel://:hunter2@s1:26379", "sqs://key:hunter2@", "", None],
)
def test_a_broker_that_is_not_redis_needs_a_recorder_url(broker):
    with pytest.raises(ConfigError, match="TASKTRAIL_RECORDER_URL") as raised:
        resolve(app_with(broker), environ={})
    assert "hunter2" not in str(raised.value)


def test_the_recorder_url_from_the_environment_wins_over_the_broker():
    env = {"TASKTRAIL_RECORDER_URL": "redis://events:6379/3"}
    assert resolve(app_with("amqp://mq//"), environ=env).recorder_url == "redis://events:6379/3"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TASKTRAIL_RECORDER_URL": "http://u:hunter2@x/"}, "not a Redis URL"),
        ({"TASKTRAIL_RECORDER_URL": "redis://u:hunter2@x:notaport/0"}, "cannot be used"),
        ({"TASKTRAIL_RECORDER_URL": "unix:///s.sock?db=x&password=hunter2"}, "cannot be used"),
        ({"TASKTRAIL_RECORDER_URL": "ftp://x/?Password=hunter2;token=hunter2"}, "not a Redis"),
        ({"TASKTRAIL_MAX_ARGS_BYTES": "lots"}, "whole number"),
        ({"TASKTRAIL_MAX_ARGS_BYTES": "-1"}, "must be 0 to"),
        ({"TASKTRAIL_MAX_ARGS_BYTES": str(10**9)}, "must be 0 to"),
        ({"TASKTRAIL_REDACT_KEYS": " , "}, "names no key"),
        ({"TASKTRAIL_STREAM": "x" * 300}, "printable"),
    ],
)
def test_unusable_settings_raise_a_config_error(env, message):
    with pytest.raises(ConfigError, match=message) as raised:
        resolve(app_with("redis://cache//"), environ=env)
    assert "hunter2" not in str(raised.value)


def test_the_environment_and_the_overrides():
    env = {
        "TASKTRAIL_STREAM": "shop:events",
        "TASKTRAIL_MAX_ARGS_BYTES": " 2048 ",
        "TASKTRAIL_REDACT_KEYS": "pin, iban,pin",
    }
    config = resolve(app_with("redis://cache/0"), environ=env)
    assert (config.stream, config.max_args_bytes, config.secret_keys) == (
        "shop:events",
        2048,
        ("pin", "iban"),
    )
    overridden = resolve(
        app_with("redis://cache/0"), {"stream": "mine", "max_args_bytes": 0}, environ=env
    )
    assert (overridden.stream, overridden.max_args_bytes) == ("mine", 0)


def test_an_unknown_option_is_an_error():
    with pytest.raises(ConfigError, match="redis_uri"):
        resolve(app_with("redis://cache/0"), {"redis_uri": "redis://x"}, environ={})


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@cache:6379/2", "redis://:**@cache:6379/2"),
        ("amqp://u:hunter2@h1//;amqp://u:hunter2@h2//", "amqp://u:**@h1//;amqp://u:**@h2//"),
        ("amqp://u:hunter2@h1//; amqp://v:other3@h2//", "amqp://u:**@h1//;amqp://v:**@h2//"),
        ("unix:///s.sock?db=1&password=hunter2", "unix:///s.sock"),
        ("redis://u:hunter2@h:notaport/0;redis://u:hunter2@h2/0", "redis://**;redis://u:**@h2/0"),
        ("redis:/:hunter2@h/0", "**"),  # not a URL kombu reads: nothing of it shown
        ("localhost", "localhost"),
        ("", ""),
    ],
)
def test_masked_hides_the_password_of_every_url_in_a_failover_list(url, shown):
    assert masked(url) == shown


def test_masked_never_raises():
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert masked(Unprintable()) == "<unreadable URL>"
    assert masked(None) == "None"


def test_scrubbed_removes_each_password_of_the_url_from_a_message():
    url = "amqp://u:s3cr%2Ft@h1//;amqp://u:hunter2@h2//;redis://h3/0?password=qtoken9"
    message = (
        "cannot connect to amqp://u:s3cr%2Ft@h1//: auth failed for s3cr/t; "
        "amqp://u:hunter2@h2// refused; qtoken9 rejected"
    )
    text = scrubbed(message, url)
    assert text == (
        "cannot connect to amqp://u:**@h1//: auth failed for **; amqp://u:**@h2// refused; "
        "** rejected"
    )
    assert scrubbed("nothing to hide", "redis://h/0") == "nothing to hide"
    assert scrubbed("x", "redis://[bad") == "x"


@pytest.mark.parametrize("url", ["redis://u:1?ss@h/0", "redis://u:12/ss@h/0", "redis://u:1#ss@h"])
def test_masked_shows_nothing_of_a_password_holding_a_url_delimiter(url):
    assert masked(url) == "redis://**"


def test_whole_numbers_accept_python_digit_grouping():
    env = {"TASKTRAIL_STREAM_MAX_ENTRIES": "1_000", "TASKTRAIL_MAX_ARGS_BYTES": "2_048"}
    config = resolve(app_with("redis://cache//"), environ=env)
    assert (config.stream_max_entries, config.max_args_bytes) == (1000, 2048)

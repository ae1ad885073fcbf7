"""Queues on a Redis broker, as kombu lays them out: the default layout, and a shop's own
``global_keyprefix``, ``sep`` and ``priority_steps`` with messages a real Celery app published."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
import redis
from celery import Celery
from django.conf import settings
from kombu.transport.redis import Channel

from workers.broker import (
    CONSUMERS,
    DEPTH,
    FIGURES,
    UNACKED,
    UnknownReader,
    broker_kind,
    reader_for,
)
from workers.broker_redis import (
    PRIORITY_SEP,
    RedisLayout,
    RedisReader,
    known_queues,
    queue_depths,
)


def message(published: float | None) -> str:
    headers = {"id": "x"} if published is None else {"id": "x", "tasktrail_published": published}
    return json.dumps({"body": "", "headers": headers})


def test_depth_counts_priority_sub_queues_and_oldest_is_the_tail(redis_client):
    redis_client.lpush("default", message(100.0))  # oldest: pushed first, sits at index -1
    redis_client.lpush("default", message(200.0))
    redis_client.lpush(f"default{PRIORITY_SEP}6", message(50.0))
    redis_client.lpush(f"default{PRIORITY_SEP}9", message(None))
    [depth] = queue_depths(redis_client, ["default"])
    assert depth.depth == 4
    assert depth.oldest_published == 50.0
    assert depth.oldest_age(now=110.0) == 60.0


def test_empty_and_garbage_queues(redis_client):
    redis_client.lpush("inventory", b"\xff not json")
    depths = {d.name: d for d in queue_depths(redis_client, ["inventory", "isolated"])}
    assert (depths["inventory"].depth, depths["inventory"].oldest_published) == (1, None)
    assert (depths["isolated"].depth, depths["isolated"].oldest_age()) == (0, None)


def test_a_key_of_another_type_is_an_unknown_depth_not_a_crash(redis_client):
    redis_client.set("isolated", "a string, not a list")
    [depth] = queue_depths(redis_client, ["isolated"])
    assert depth.depth is None


def test_known_queues_from_kombu_bindings(redis_client):
    redis_client.sadd("_kombu.binding.default", f"default{PRIORITY_SEP}{PRIORITY_SEP}default")
    redis_client.sadd(
        "_kombu.binding.reply.celery.pidbox",
        f"x{PRIORITY_SEP}{PRIORITY_SEP}abc.reply.celery.pidbox",
    )
    assert "default" in known_queues(redis_client, extra=["inventory"])
    assert "inventory" in known_queues(redis_client, extra=["inventory"])
    assert not [q for q in known_queues(redis_client) if q.endswith("pidbox")]


@pytest.mark.parametrize("steps", [[0, 3, 6, 9], list(range(10)), [0, 5], [1, 2, 3], [0, 9, 3]])
def test_the_layout_names_the_keys_kombu_reads(steps):
    """The same keys as kombu's own Channel._q_for_pri, for every configured step."""
    options = {"global_keyprefix": "p:", "sep": ":", "priority_steps": steps}

    class Probe:  # the attributes kombu's _q_for_pri and priority read
        sep = ":"
        priority_steps = steps
        _q_for_pri = getattr(Channel, "_q_for_pri")  # noqa: B009 (kombu-stubs lack it)
        priority = getattr(Channel, "priority")  # noqa: B009

    expected = {"p:" + Probe()._q_for_pri("q", s) for s in steps}
    assert set(RedisLayout.from_options(options).queue_keys("q")) == expected


@pytest.fixture
def shop() -> Iterator[tuple[str, dict, str]]:
    """A shop's broker on the test Redis: its own key prefix, sep and ten priority steps."""
    prefix = f"shop-{uuid.uuid4().hex[:8]}:"
    options = {"global_keyprefix": prefix, "priority_steps": list(range(10)), "sep": ":"}
    queue = f"orders-{uuid.uuid4().hex[:6]}"
    yield settings.REDIS_URL, options, queue
    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def shop_app(url: str, options: dict) -> Celery:
    app = Celery("shop-test", broker=url, set_as_current=False, fixups=[])
    app.conf.update(broker_transport_options=options, task_queue_max_priority=9)
    return app


def test_a_prefixed_broker_with_priorities_counts_every_message(shop, redis_client):
    url, options, queue = shop
    app = shop_app(url, options)
    for priority in (0, 0, 4, 9, 9):
        app.send_task("shop.work", queue=queue, priority=priority)
    # the demo's own queue, unprefixed on the same Redis, is not the shop's
    redis_client.sadd("_kombu.binding.default", f"default{PRIORITY_SEP}{PRIORITY_SEP}default")
    redis_client.lpush("default", message(1.0))

    reader = reader_for(url, options)
    assert isinstance(reader, RedisReader)
    try:
        assert reader.list_queues() == [queue]
        reading = reader.read([queue, "default"])
    finally:
        reader.close()
    assert reading.error == ""
    assert reading.queues[queue].depth == 5
    assert reading.queues["default"].depth == 0  # the shop has no queue "default"
    assert reading.unknown == (CONSUMERS, UNACKED, "idle_since")
    layout = reader.layout
    assert (layout.prefix, layout.sep, layout.steps) == (options["global_keyprefix"], ":",
                                                         tuple(range(10)))  # fmt: skip


def test_glob_characters_in_the_prefix_do_not_widen_the_scan(redis_client):
    layout = RedisLayout(prefix="a*[b]?:")
    redis_client.sadd("a*[b]?:_kombu.binding.q", f"q{PRIORITY_SEP}{PRIORITY_SEP}mine")
    redis_client.sadd("aXbY:_kombu.binding.q", f"q{PRIORITY_SEP}{PRIORITY_SEP}theirs")
    try:
        assert known_queues(redis_client, layout=layout) == ["mine"]
    finally:
        redis_client.delete("a*[b]?:_kombu.binding.q", "aXbY:_kombu.binding.q")


def test_an_unreachable_broker_reads_as_unknown_with_its_password_masked():
    reader = reader_for("redis://:hunter2-secret@127.0.0.1:1/0", {})
    assert reader.list_queues() is None
    reading = reader.read(["orders"])
    assert reading.queues["orders"].depth is None
    assert reading.error and "hunter2-secret" not in reading.error
    assert "hunter2-secret" not in reading.where


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("redis://h:6379/0", "redis"),
        ("rediss://h:6380/0", "redis"),
        ("sentinel://h:26379;sentinel://h2:26379", "redis"),
        ("amqp://guest:guest@h:5672//", "amqp"),
        ("pyamqp://h//", "amqp"),
        ("sqs://key:secret@", "sqs"),
        ("memory://", "memory"),
    ],
)
def test_broker_kind(url, kind):
    assert broker_kind(url) == kind


def test_an_unknown_broker_knows_no_figure_and_shows_no_password():
    reader = reader_for("sqs://AKIA:very-secret@", {})
    assert isinstance(reader, UnknownReader)
    reading = reader.read(["orders"])
    assert reading.kind == "sqs" and reading.unknown == FIGURES and DEPTH in reading.unknown
    assert reading.queues["orders"].depth is None and reading.queues["orders"].consumers is None
    assert reader.list_queues() is None
    assert "very-secret" not in reading.where

from __future__ import annotations

import json

from workers.broker_redis import PRIORITY_SEP, known_queues, queue_depths


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


def test_known_queues_from_kombu_bindings(redis_client):
    redis_client.sadd("_kombu.binding.default", f"default{PRIORITY_SEP}{PRIORITY_SEP}default")
    redis_client.sadd(
        "_kombu.binding.reply.celery.pidbox",
        f"x{PRIORITY_SEP}{PRIORITY_SEP}abc.reply.celery.pidbox",
    )
    assert "default" in known_queues(redis_client, extra=["inventory"])
    assert "inventory" in known_queues(redis_client, extra=["inventory"])
    assert not [q for q in known_queues(redis_client) if q.endswith("pidbox")]

"""TASKTRAIL_EVENT_KEY on the monitor: signed entries are taken, the others dead-lettered."""

from __future__ import annotations

import pytest
from django.conf import settings

from dashboard.ingest.monitor import Monitor
from dashboard.ingest.stream import StreamConsumer
from dashboard.models import TaskRun
from tasktrail.events import encode_batch
from tasktrail.signing import parse_keys, sign
from tests.conftest import new_task_id, story_success

pytestmark = pytest.mark.django_db

OLD = parse_keys("old:" + "o" * 24)
NEW = parse_keys("new:" + "n" * 24)
OTHER = parse_keys("new:" + "x" * 24)  # the right id with another secret


def monitor(client, keys) -> Monitor:
    consumer = StreamConsumer(client, settings.TASKTRAIL_STREAM, consumer="signing")
    return Monitor(consumer, event_keys=keys)


def add(client, fields) -> str:
    return client.xadd(settings.TASKTRAIL_STREAM, fields)


def entry(task_id: str, key=None) -> dict[bytes, bytes]:
    fields = encode_batch(story_success(task_id))
    return sign(fields, key, settings.TASKTRAIL_STREAM) if key is not None else fields


def test_signed_entries_are_taken_and_the_others_dead_lettered(redis_client):
    signed, unsigned, forged, other, moved = (new_task_id() for _ in range(5))
    add(redis_client, entry(signed, NEW[0]))
    add(redis_client, entry(unsigned))
    tampered = entry(forged, NEW[0])
    other_events = encode_batch(story_success(forged)[:2])[b"e"]
    add(redis_client, {**tampered, b"e": other_events})  # the events changed, not the signature
    add(redis_client, {b"e": other_events, b"s": tampered[b"s"]})  # a signature of other fields
    add(redis_client, entry(other, OTHER[0]))
    add(redis_client, sign(encode_batch(story_success(moved)), NEW[0], "another:stream"))

    stats = monitor(redis_client, NEW).run(drain=True)

    assert set(TaskRun.objects.values_list("task_id", flat=True)) >= {signed}
    assert not TaskRun.objects.filter(task_id__in=[unsigned, forged, other, moved]).exists()
    assert (stats.unsigned, stats.rejected) == (5, 5)
    reasons = [f[b"reason"] for _, f in redis_client.xrange(settings.TASKTRAIL_STREAM + ":dead")]
    assert reasons.count(b"wrong signature for key id 'new'") == 4
    assert sum(r.startswith(b"unsigned entry") for r in reasons) == 1
    assert redis_client.xlen(settings.TASKTRAIL_STREAM) == 0


def test_rotation_the_monitor_takes_both_keys_while_workers_move(redis_client):
    by_old, by_new, by_neither = new_task_id(), new_task_id(), new_task_id()
    add(redis_client, entry(by_old, OLD[0]))
    add(redis_client, entry(by_new, NEW[0]))
    add(redis_client, entry(by_neither, OTHER[0]))
    stats = monitor(redis_client, NEW + OLD).run(drain=True)
    assert TaskRun.objects.filter(task_id__in=[by_old, by_new], state="SUCCESS").count() == 2
    assert (stats.unsigned, TaskRun.objects.filter(task_id=by_neither).exists()) == (1, False)
    # Then the old key is retired: what it signs is refused, naming the key id
    late = new_task_id()
    add(redis_client, entry(late, OLD[0]))
    stats = monitor(redis_client, NEW).run(drain=True)
    assert stats.unsigned == 1
    [*_, (_, letter)] = redis_client.xrange(settings.TASKTRAIL_STREAM + ":dead")
    assert letter[b"reason"] == b"signed with key id 'old', which the monitor does not have"


def test_without_keys_signatures_are_ignored(redis_client):
    signed, unsigned = new_task_id(), new_task_id()
    add(redis_client, entry(signed, OTHER[0]))
    add(redis_client, entry(unsigned))
    stats = monitor(redis_client, ()).run(drain=True)
    assert (stats.unsigned, stats.rejected) == (0, 0)
    assert TaskRun.objects.filter(task_id__in=[signed, unsigned], state="SUCCESS").count() == 2


def test_refusals_are_logged_at_most_ten_a_minute(redis_client):
    import logging

    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("tasktrail.monitor")
    logger.addHandler(handler)
    try:
        for _ in range(30):
            add(redis_client, entry(new_task_id()))
        stats = monitor(redis_client, NEW).run(drain=True)
    finally:
        logger.removeHandler(handler)
    assert stats.unsigned == 30
    assert sum("refused: unsigned entry" in line for line in lines) == 10
    assert "n" * 24 not in "\n".join(lines)

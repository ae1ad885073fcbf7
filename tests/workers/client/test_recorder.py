"""The publish side of the recorder, in this process, against the real broker."""

from __future__ import annotations

import json

from django.conf import settings

from tasktrail import recorder
from tasktrail.events import decode_entry
from workers.tasks import charge_card, send_invoice


def queued_message(client, queue="default"):
    raw = client.lindex(queue, -1)
    assert raw is not None
    return json.loads(raw)


def recorded(client):
    recorder.flush()
    events = []
    for _, fields in client.xrange(settings.TASKTRAIL_STREAM):
        events += decode_entry(fields)[0]
    return events


def test_publish_stamps_headers_and_records_the_published_event(redis_client):
    result = send_invoice.delay(1234, email="a@example.com")
    headers = queued_message(redis_client)["headers"]
    assert headers["id"] == result.id
    assert headers["tasktrail_input_id"] == "1234"
    assert isinstance(headers["tasktrail_published"], float)
    [published] = [e for e in recorded(redis_client) if e["task_id"] == result.id]
    assert published["kind"] == "published"
    assert published["name"] == "workers.tasks.send_invoice"
    assert published["queue"] == "default"
    assert published["input_id"] == "1234"
    assert json.loads(published["args"]) == [1234]
    assert json.loads(published["kwargs"]) == {"email": "a@example.com"}
    assert published["arg_names"] == "order_id,email"
    assert published["published_at"] == headers["tasktrail_published"]


def test_args_over_the_cap_are_not_kept(redis_client):
    result = send_invoice.delay(1, email="x" * (settings.TASKTRAIL_MAX_ARGS_BYTES + 1))
    [published] = [e for e in recorded(redis_client) if e["task_id"] == result.id]
    assert "args" not in published and "kwargs" not in published
    assert "too large" in published["args_dropped"]
    assert published["input_id"] == "1"


def test_countdown_is_recorded_as_eta(redis_client):
    result = charge_card.apply_async(("PAY-1", 100), countdown=60)
    [published] = [e for e in recorded(redis_client) if e["task_id"] == result.id]
    assert published["eta"] > published["published_at"] + 59


def test_a_broken_receiver_never_raises_into_celery(redis_client, monkeypatch):
    current = recorder.current()
    assert current is not None
    before = current.receiver_errors

    def broken(name):
        raise RuntimeError("rule lookup exploded")

    monkeypatch.setattr(current, "rule_for", broken)
    result = send_invoice.delay(5)  # must still publish
    assert queued_message(redis_client)["headers"]["id"] == result.id
    assert current.receiver_errors > before


def test_install_is_idempotent(redis_client):
    import tasktrail
    from workers.celery_app import app

    first = recorder.current()
    assert first is not None
    tasktrail.install(app, stream=settings.TASKTRAIL_STREAM + ":second")  # the same app: no change
    assert recorder.current() is first
    result = send_invoice.delay(7)  # still recorded once, into the first stream
    assert [e["kind"] for e in recorded(redis_client) if e["task_id"] == result.id] == ["published"]

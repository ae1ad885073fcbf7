"""Shared fixtures: a real Redis/Valkey (``REDIS_URL``, or the embedded one the settings started
because ``tests.embedded_valkey`` asked for it before they loaded) and builders for events as the
recorder writes them."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import redis
from django.conf import settings

from tasktrail.events import Event, make_event
from tests.smtp import SmtpServer

# Property tests. "ci" (make test): the same examples on every run and machine, whatever a local
# .hypothesis directory holds, so a run fails only for a change in the code; a failure prints the
# blob that replays it. "fuzz" (make fuzz, --hypothesis-profile=fuzz): fresh random examples, many
# more of them, saved locally so a failure found there replays on the next fuzz run. A failure found
# by fuzzing is kept as an explicit @example on its test.
_CI_EXAMPLES = 100
hypothesis.settings.register_profile(
    "ci",
    max_examples=_CI_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
)
hypothesis.settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "1000")),
    deadline=None,
    print_blob=True,
)
hypothesis.settings.load_profile("ci")  # --hypothesis-profile, read after this module, overrides


def examples(ci_count: int) -> int:
    """A test's example count: ``ci_count`` under "ci", scaled by the profile's count otherwise
    (fuzz with FUZZ_EXAMPLES=1000 runs ten times as many). Read when the test module is imported,
    after the profile is chosen."""
    return max(1, ci_count * hypothesis.settings.default.max_examples // _CI_EXAMPLES)


# Keys the suite may create and removes again: the event stream family and the demo queues.
QUEUE_KEYS = ("default", "inventory", "isolated")


def tasktrail_keys(client: redis.Redis) -> list[bytes]:
    stream = settings.TASKTRAIL_STREAM
    keys = [k for k in client.scan_iter(match=f"{stream}*", count=1000)]
    for queue in QUEUE_KEYS:
        keys += [queue.encode()] + [
            f"{queue}\x06\x16{p}".encode() for p in (1, 2, 3, 4, 5, 6, 7, 8, 9)
        ]
    keys += [b"unacked", b"unacked_index", b"unacked_mutex"]
    keys += list(client.scan_iter(match="_kombu.binding.*", count=1000))
    return keys


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    """Django's cache (per process, in memory) starts empty in every test: what one test cached
    (the task name prefix, say) never shows in the next."""
    from django.core.cache import cache

    cache.clear()
    yield


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(*tasktrail_keys(client))
    yield client
    client.delete(*tasktrail_keys(client))
    client.close()


@pytest.fixture
def smtp_server(settings: Any) -> Iterator[SmtpServer]:
    """A real SMTP server on a free loopback port; Django's SMTP backend sends alerts to it."""
    server = SmtpServer().start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5
    settings.TASKTRAIL_ALERT_EMAILS = ["oncall@example.com"]
    yield server
    server.stop()


_ids = itertools.count(1)


def new_task_id() -> str:
    return f"t-{time.time_ns()}-{next(_ids)}"


def event(kind: Any, task_id: str, ts: float, **fields: Any) -> Event:
    """An event as the recorder makes it: its publish always carries the call (the arguments, or
    why they were not kept), which is what fixes the task's queue and input id."""
    if kind == "published" and not {"args", "kwargs", "args_dropped"} & set(fields):
        fields = {"args": "[]", "kwargs": "{}", **fields}
    return make_event(kind, task_id, ts, **fields)


def story_success(task_id: str, t0: float = 1_750_000_000.0) -> list[Event]:
    """A task published, received, started and finished successfully."""
    return [
        event(
            "published",
            task_id,
            t0,
            name="shop.send_invoice",
            queue="default",
            input_id="1234",
            args="[1234]",
            kwargs="{}",
            retries=0,
            published_at=t0,
        ),
        event(
            "received",
            task_id,
            t0 + 0.5,
            name="shop.send_invoice",
            queue="default",
            args="[1234]",
            kwargs="{}",
            hostname="w1@host",
            retries=0,
            published_at=t0,
        ),
        event("started", task_id, t0 + 1.0, retries=0, hostname="w1@host", pid=11, queue_wait=1.0),
        event("succeeded", task_id, t0 + 3.0, retries=0, hostname="w1@host", pid=11, runtime=2.0),
    ]


def story_retry_then_fail(task_id: str, t0: float = 1_750_000_000.0) -> list[Event]:
    """Celery's own retry once, then a final failure on the second attempt."""
    return [
        event(
            "published",
            task_id,
            t0,
            name="shop.charge",
            queue="default",
            input_id="PAY-1",
            retries=0,
            published_at=t0,
        ),
        event("received", task_id, t0 + 0.1, hostname="w1@host", retries=0),
        event("started", task_id, t0 + 0.2, retries=0, hostname="w1@host", pid=11),
        event(
            "published",
            task_id,
            t0 + 0.3,
            name="shop.charge",
            queue="default",
            retries=1,
            published_at=t0 + 0.3,
            eta=t0 + 1.3,
        ),
        event(
            "retried",
            task_id,
            t0 + 0.31,
            retries=0,
            hostname="w1@host",
            pid=11,
            exc_type="PaymentDeclined",
            exc_message="declined",
            traceback="Traceback…",
        ),
        event("received", task_id, t0 + 0.4, hostname="w2@host", retries=1),
        event("started", task_id, t0 + 1.4, retries=1, hostname="w2@host", pid=12),
        event(
            "failed",
            task_id,
            t0 + 1.5,
            retries=1,
            hostname="w2@host",
            pid=12,
            exc_type="PaymentDeclined",
            exc_message="declined again",
            traceback="Traceback 2",
        ),
    ]

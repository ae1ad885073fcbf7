"""A shop's Celery app with tasktrail installed, on a broker of its own, for the queue pause tests.
``PAUSESHOP_BROKER_URL`` and ``PAUSESHOP_TRANSPORT_OPTIONS`` (JSON) come from the test; the
recorder's Redis and stream from ``TASKTRAIL_RECORDER_URL`` and ``TASKTRAIL_STREAM``, as a shop
sets them."""

from __future__ import annotations

import json
import os
from pathlib import Path

from celery import Celery

import tasktrail

app = Celery("pauseshop", set_as_current=True)
app.conf.update(
    broker_url=os.environ.get("PAUSESHOP_BROKER_URL", ""),
    broker_transport_options=json.loads(os.environ.get("PAUSESHOP_TRANSPORT_OPTIONS") or "{}"),
    broker_connection_retry_on_startup=True,
    accept_content=["json"],
    worker_hijack_root_logger=True,
    worker_prefetch_multiplier=1,
)
tasktrail.install(app)


@app.task(name="pauseshop.touch")
def touch(path: str) -> str:
    """Leaves ``path`` behind: the test's proof that the task ran."""
    Path(path).write_text("ran")
    return path

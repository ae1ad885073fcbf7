"""A shop's Celery app on a broker of its own, for the operator-action tests: no Django, no
tasktrail. ``SHOPCTL_BROKER_URL``, ``SHOPCTL_TRANSPORT_OPTIONS`` (JSON) and ``SHOPCTL_QUEUE`` come
from the test that starts a worker with it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from celery import Celery

app = Celery("shopctl", set_as_current=True)
app.conf.update(
    broker_url=os.environ.get("SHOPCTL_BROKER_URL", ""),
    broker_transport_options=json.loads(os.environ.get("SHOPCTL_TRANSPORT_OPTIONS") or "{}"),
    task_default_queue=os.environ.get("SHOPCTL_QUEUE", "shopctl"),
    broker_connection_retry_on_startup=True,
    accept_content=["json"],
    worker_hijack_root_logger=True,
)


@app.task(name="shopctl.touch", bind=True)
def touch(self: Any, path: str, text: str) -> str:
    """Leaves ``path`` holding ``text`` and the retry header it ran with: the test's proof."""
    retry_of = getattr(self.request, "tasktrail_retry_of", None)
    Path(path).write_text(json.dumps({"text": text, "id": self.request.id, "retry_of": retry_of}))
    return text

"""Settings of ``bench.queues_page`` and its children: tasktrail's own, with Celery's control
exchange named after the run, so the broadcasts and their reply bindings are the run's own keys
(deleted with it) and never reach another worker on the same Redis."""

from __future__ import annotations

import os

from dashboard.settings import *  # noqa: F403

CELERY_CONTROL_EXCHANGE = os.environ["BENCH_CONTROL_EXCHANGE"]

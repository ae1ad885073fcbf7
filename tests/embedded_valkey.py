"""Asks for the embedded Valkey when the suite runs without ``REDIS_URL``.

Loaded with ``-p tests.embedded_valkey`` (pyproject's addopts) because pytest-django loads the
settings before any conftest.py is imported, and the settings start the server only when
``TASKTRAIL_EMBEDDED_REDIS`` is set by then. The settings export its URL as ``REDIS_URL``, so the
worker, monitor and web processes the tests start (they inherit the environment) use the same one.
"""

from __future__ import annotations

import os

os.environ.setdefault("TASKTRAIL_EMBEDDED_REDIS", "1")

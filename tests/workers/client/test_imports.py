"""The client imports nothing of the service and needs neither Django nor OpenTelemetry: a shop
may have neither. (Celery, kombu and redis-py load them when present, so here they are made
unimportable for the child process, as if not installed.)"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.processes import ROOT

CHECK = """
import importlib, importlib.abc, sys

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("django", "opentelemetry"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
for name in ("tasktrail", "tasktrail.recorder", "tasktrail.config", "tasktrail.revocations",
             "tasktrail.catalog", "tasktrail.tracing.context", "tasktrail.tracing.config",
             "tasktrail.tracing.setup"):
    importlib.import_module(name)
from tasktrail.tracing.context import run_span_id
assert run_span_id(object(), "some-id") is None
loaded = sorted({m.split(".")[0] for m in sys.modules} & {"dashboard", "workers", "tracing"})
print("loaded:", loaded)
"""


def test_the_client_imports_without_django_opentelemetry_or_the_service():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "OTEL_"))}
    done = subprocess.run(
        [sys.executable, "-c", CHECK], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "loaded: []"

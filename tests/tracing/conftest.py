"""Tracing in the test process: one provider for the whole run (OpenTelemetry allows one), spans
kept in memory, instrumentation on only while tests in this package run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tasktrail.tracing import setup as tracing_setup

_exporter = InMemorySpanExporter()


@pytest.fixture(scope="package")
def traced_process() -> Iterator[InMemorySpanExporter]:
    """This process traces as the web does (Celery + Django instrumented, publish guard)."""
    assert tracing_setup.setup("web", exporter=_exporter)
    yield _exporter
    tracing_setup.uninstrument()  # the rest of the suite runs untraced


@pytest.fixture
def spans(traced_process: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    traced_process.clear()
    yield traced_process
    traced_process.clear()

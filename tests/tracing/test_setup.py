"""Set-up: idempotent, in the right worker process, off by default, drops counted."""

from __future__ import annotations

import logging
import threading
from types import SimpleNamespace

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from tasktrail.tracing import setup as tracing_setup


def test_setup_is_idempotent(traced_process):
    provider = tracing_setup._state.provider
    assert tracing_setup.setup("web") is True
    assert tracing_setup.setup("worker") is True  # solo pool: worker_process_init in this process
    assert tracing_setup._state.provider is provider
    assert tracing_setup.enabled()


def test_service_name_defaults_to_the_role_unless_set(monkeypatch):
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    assert tracing_setup._resource("worker").attributes["service.name"] == "tasktrail-worker"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "shop-worker")
    assert tracing_setup._resource("worker").attributes["service.name"] == "shop-worker"


@pytest.mark.parametrize(
    ("pool", "sets_up_in_worker_init"),
    [
        ("prefork", False),  # pool processes set up after the fork, in worker_process_init
        ("processes", False),
        ("solo", False),  # solo sends worker_process_init in the main process
        ("threads", True),  # no fork, no worker_process_init: set up in worker_init
        ("celery.concurrency.thread:TaskPool", True),
    ],
)
def test_worker_init_sets_up_only_pools_that_do_not_fork(monkeypatch, pool, sets_up_in_worker_init):
    calls = []
    monkeypatch.setattr(tracing_setup, "setup", lambda role, **_: calls.append(role) or True)
    tracing_setup._on_worker_init(sender=SimpleNamespace(pool_cls=pool))
    assert calls == (["worker"] if sets_up_in_worker_init else [])
    tracing_setup._on_worker_process_init(sender="w@host")
    assert calls[-1:] == ["worker"]


def test_worker_hooks_are_connected_once():
    from celery import signals

    tracing_setup.install_worker_hooks()
    tracing_setup.install_worker_hooks()
    uids = [key[0] for key, _ in signals.worker_process_init.receivers]
    assert uids.count("tasktrail.tracing._on_worker_process_init") == 1


def test_a_failing_setup_never_stops_a_worker(monkeypatch, caplog):
    def broken(role, **_):
        raise RuntimeError("collector config exploded")

    monkeypatch.setattr(tracing_setup, "setup", broken)
    with caplog.at_level(logging.ERROR, logger="tasktrail.tracing"):
        tracing_setup._on_worker_process_init()
    assert "collector config exploded" in caplog.text


class StuckExporter(SpanExporter):
    """An exporter whose collector does not answer until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.exported = 0

    def export(self, spans):
        self.release.wait(10)
        self.exported += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self):
        self.release.set()


def test_spans_dropped_by_a_full_queue_are_counted(traced_process, caplog):
    exporter = StuckExporter()
    processor = BatchSpanProcessor(
        exporter, max_queue_size=4, max_export_batch_size=2, schedule_delay_millis=10
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("burst")
    before = tracing_setup.dropped_spans()
    with caplog.at_level(logging.WARNING):
        for n in range(50):
            tracer.start_span(f"burst {n}").end()
    dropped = tracing_setup.dropped_spans() - before
    exporter.release.set()
    provider.shutdown()
    assert dropped > 0
    assert dropped + exporter.exported <= 50
    # one summary instead of a warning per span
    sdk_lines = [r for r in caplog.records if r.getMessage().startswith("Queue full")]
    assert sdk_lines == []


class KeepingExporter(SpanExporter):
    """An exporter that keeps the names of the spans it is given."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def export(self, spans):
        self.names += [span.name for span in spans]
        return SpanExportResult.SUCCESS


def test_a_small_queue_setting_still_starts(monkeypatch):
    monkeypatch.delenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", raising=False)
    exporter = KeepingExporter()
    provider = TracerProvider()
    # a queue below the SDK's default batch of 512, which the SDK would refuse
    provider.add_span_processor(tracing_setup._batch_processor(exporter, 100))
    tracer = provider.get_tracer("small queue")
    for n in range(3):
        tracer.start_span(f"span {n}").end()
    assert provider.force_flush(10_000) is True
    provider.shutdown()
    assert exporter.names == ["span 0", "span 1", "span 2"]

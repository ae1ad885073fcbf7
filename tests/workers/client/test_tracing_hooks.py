"""Worker tracing from ``tasktrail.install`` when ``OTEL_*`` asks for it; the service name."""

from __future__ import annotations

import sys

import pytest
from celery import Celery

import tasktrail
from tasktrail.tracing import setup as tracing_setup

pytestmark = pytest.mark.usefixtures("not_installed")


@pytest.fixture(autouse=True)
def _own_service_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing_setup, "_default_names", {})
    for name in ("OTEL_SDK_DISABLED", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)


def test_tracing_asked_for_without_opentelemetry_is_one_warning(monkeypatch, tasktrail_log):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # import fails as if absent
    tasktrail.install(Celery("shop", set_as_current=False))
    [warning] = tasktrail_log.warnings()
    assert "tasktrail[otel]" in warning and "OTEL_TRACES_EXPORTER=console" in warning
    assert tracing_setup._default_names == {}  # no worker hooks


def test_no_tracing_asked_for_is_silent(monkeypatch, tasktrail_log):
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    tasktrail.install(Celery("shop", set_as_current=False))
    assert tasktrail_log.warnings() == [] and tasktrail_log.errors() == []


def test_worker_spans_name_the_shop_unless_otel_service_name_does(monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    tasktrail.install(Celery("checkout", set_as_current=False))
    from opentelemetry.sdk.resources import SERVICE_NAME

    assert tracing_setup._resource("worker").attributes[SERVICE_NAME] == "checkout-worker"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "checkout-jobs")
    assert tracing_setup._resource("worker").attributes[SERVICE_NAME] == "checkout-jobs"
    assert tracing_setup._resource("web").attributes[SERVICE_NAME] == "checkout-jobs"

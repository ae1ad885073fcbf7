"""When tracing is on, from the standard OTEL_* variables."""

from __future__ import annotations

import pytest

from tasktrail.tracing.config import DEFAULT_MAX_QUEUE_SIZE, config_from_env


@pytest.mark.parametrize(
    ("env", "enabled", "exporters"),
    [
        ({}, False, ()),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True, ("otlp",)),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, True, ("otlp",)),
        ({"OTEL_TRACES_EXPORTER": "console"}, True, ("console",)),
        ({"OTEL_TRACES_EXPORTER": "otlp, console,otlp"}, True, ("otlp", "console")),
        ({"OTEL_TRACES_EXPORTER": "none"}, True, ()),  # ids propagated, nothing exported
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, False, ()),
        (
            {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"},
            False,
            (),
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, False, ()),
    ],
)
def test_on_or_off(env, enabled, exporters):
    config = config_from_env(env)
    assert (config.enabled, config.exporters) == (enabled, exporters)
    assert config.why


def test_unknown_exporters_are_reported_not_fatal():
    config = config_from_env({"OTEL_TRACES_EXPORTER": "otlp,jaeger"})
    assert (config.enabled, config.exporters, config.unknown_exporters) == (
        True,
        ("otlp",),
        ("jaeger",),
    )


def test_queue_size_is_larger_than_the_sdk_default_unless_set():
    assert config_from_env({}).max_queue_size == DEFAULT_MAX_QUEUE_SIZE > 2048
    assert config_from_env({"OTEL_BSP_MAX_QUEUE_SIZE": "100"}).max_queue_size == 100
    assert config_from_env({"OTEL_BSP_MAX_QUEUE_SIZE": "lots"}).max_queue_size == 8192

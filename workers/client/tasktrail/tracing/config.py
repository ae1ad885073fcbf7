"""Whether and how a process traces, read from the standard ``OTEL_*`` environment variables.

Tracing is **on** when ``OTEL_TRACES_EXPORTER`` names an exporter, or, when that is unset, when an
OTLP endpoint is set (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``).
``OTEL_SDK_DISABLED=true`` turns it off whatever else is set. Off is the default, unlike the SDK's
own default exporter (OTLP to localhost:4318): a fresh ``make demo`` or test run must not try to
reach a collector that is not there, and off must cost nothing (no provider, no instrumentation).

Everything else is read by the SDK and the exporter themselves from the standard variables:
service name (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``), sampler
(``OTEL_TRACES_SAMPLER``, ``OTEL_TRACES_SAMPLER_ARG``), endpoint, headers, timeout, compression
and the batch processor's delay and batch size (``OTEL_BSP_*``). Pure Python: no OpenTelemetry
import, so reading the configuration costs nothing when tracing is off.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

EXPORTERS: Final = ("otlp", "console")  # "none" is accepted too: trace, export nothing
# The SDK's default (2048) overflows in a burst of short tasks: a worker draining a backlog ends
# two spans per task (run + any publish) faster than one exporter thread sends them. 8192 spans
# are a few MB per process at most.
DEFAULT_MAX_QUEUE_SIZE: Final = 8192


@dataclass(frozen=True)
class TracingConfig:
    enabled: bool
    exporters: tuple[str, ...]  # subset of EXPORTERS; empty with OTEL_TRACES_EXPORTER=none
    max_queue_size: int
    why: str  # one line for the logs: why tracing is on or off
    unknown_exporters: tuple[str, ...] = ()  # named but not supported here (ignored, logged)


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _positive_int(value: str | None, default: int) -> int:
    try:
        number = int((value or "").strip())
    except ValueError:
        return default
    return number if number > 0 else default


def config_from_env(environ: Mapping[str, str] | None = None) -> TracingConfig:
    env = os.environ if environ is None else environ
    queue = _positive_int(env.get("OTEL_BSP_MAX_QUEUE_SIZE"), DEFAULT_MAX_QUEUE_SIZE)
    if _true(env.get("OTEL_SDK_DISABLED")):
        return TracingConfig(False, (), queue, "OTEL_SDK_DISABLED is true")
    named = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if named:
        exporters = tuple(dict.fromkeys(n for n in named if n in EXPORTERS))
        unknown = tuple(n for n in named if n not in (*EXPORTERS, "none"))
        if not exporters and "none" not in named:
            return TracingConfig(
                False, (), queue, "OTEL_TRACES_EXPORTER names no supported exporter", unknown
            )
        return TracingConfig(
            True, exporters, queue, f"OTEL_TRACES_EXPORTER={','.join(named)}", unknown
        )
    for variable in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        if env.get(variable, "").strip():
            return TracingConfig(True, ("otlp",), queue, f"{variable} is set")
    return TracingConfig(False, (), queue, "no OTEL_TRACES_EXPORTER or OTLP endpoint set")

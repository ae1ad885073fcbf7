"""Links from a task to its trace in a trace viewer: presets and URL templates.

Configured by one setting, ``TASKTRAIL_TRACE_VIEWER`` (environment variable of the same name):

- ``"<preset> <base URL>"``, e.g. ``"jaeger http://jaeger:16686"``,
  ``"tempo https://grafana.example.com datasource=tempo-prod"``,
  ``"honeycomb https://ui.honeycomb.io/acme/environments/prod"``;
- or a URL template with placeholders, e.g. ``"https://traces.example.com/t/{trace_id}"``.

Placeholders: ``{trace_id}`` (32 hex), ``{span_id}`` (16 hex; empty on a trace link),
``{trace_id_dd64}`` (the low 64 bits in decimal: Datadog log correlation), ``{span_id_dec}``,
``{start_s}``/``{end_s}`` and ``{start_ms}``/``{end_ms}`` (Unix time of the window around the
task), ``{base}``. Values are URL-encoded where they are put. Pure Python, no Django.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import string
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

# Traces start before the task (the web request) and end after it (children, retries): the window
# given to viewers that search by time is the task's own span widened by this much each side.
WINDOW_MARGIN: Final = dt.timedelta(minutes=15)
PLACEHOLDERS: Final = frozenset(
    {"trace_id", "span_id", "trace_id_dd64", "span_id_dec", "start_s", "end_s", "start_ms",
     "end_ms", "base"}
)  # fmt: skip
# whole ids only (fullmatch): "$" would also accept a trailing line break
_TRACE_ID: Final = re.compile(r"[0-9a-f]{32}")
_SPAN_ID: Final = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True)
class Preset:
    trace: str  # template of a link to the whole trace
    span: str | None = None  # template of a link that also selects the span (None: same as trace)
    doc: str = ""


# Span selection only where the viewer documents a parameter for it.
PRESETS: Final[dict[str, Preset]] = {
    "jaeger": Preset(
        "{base}/trace/{trace_id}", "{base}/trace/{trace_id}?uiFind={span_id}", "Jaeger UI"
    ),
    "tempo": Preset("{base}/explore?schemaVersion=1&orgId=1&panes={tempo_panes}", doc="Grafana"),
    "zipkin": Preset("{base}/zipkin/traces/{trace_id}", doc="Zipkin Lens"),
    "honeycomb": Preset(
        "{base}/trace?trace_id={trace_id}&trace_start_ts={start_s}&trace_end_ts={end_s}",
        "{base}/trace?trace_id={trace_id}&span={span_id}&trace_start_ts={start_s}"
        "&trace_end_ts={end_s}",
        "Honeycomb (base: https://ui.honeycomb.io/<team>/environments/<env>[/datasets/<ds>])",
    ),
    "signoz": Preset("{base}/trace/{trace_id}", doc="SigNoz"),
    # Datadog accepts 128-bit trace ids (hex) in the trace view.
    "datadog": Preset(
        "{base}/apm/trace/{trace_id}", doc="Datadog (base: https://app.datadoghq.com)"
    ),
}


class ViewerConfigError(ValueError):
    """``TASKTRAIL_TRACE_VIEWER`` cannot be used; the message says why."""


@dataclass(frozen=True)
class TraceViewer:
    name: str  # preset name, or "custom"
    base: str
    trace_template: str
    span_template: str
    datasource: str = "tempo"  # Grafana Tempo data source uid

    def trace_url(
        self, trace_id: str, start: dt.datetime | None = None, end: dt.datetime | None = None
    ) -> str | None:
        return self._render(self.trace_template, trace_id, "", start, end)

    def span_url(
        self,
        trace_id: str,
        span_id: str | None,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
    ) -> str | None:
        if not span_id or not _SPAN_ID.fullmatch(span_id):
            return self.trace_url(trace_id, start, end)
        return self._render(self.span_template, trace_id, span_id, start, end)

    def _render(
        self,
        template: str,
        trace_id: str,
        span_id: str,
        start: dt.datetime | None,
        end: dt.datetime | None,
    ) -> str | None:
        trace_id = (trace_id or "").lower()
        if not _TRACE_ID.fullmatch(trace_id):
            return None
        begin, finish = time_window(start, end)
        values = {
            "base": self.base,
            "trace_id": trace_id,
            "span_id": span_id,
            "trace_id_dd64": str(int(trace_id[16:], 16)),
            "span_id_dec": str(int(span_id, 16)) if span_id else "",
            "start_s": str(int(begin.timestamp())),
            "end_s": str(int(finish.timestamp()) + 1),
            "start_ms": str(int(begin.timestamp() * 1000)),
            "end_ms": str(int(finish.timestamp() * 1000) + 1),
        }
        values["tempo_panes"] = quote(_tempo_panes(self.datasource, values), safe="")
        return template.format_map(
            {
                k: (v if k in ("base", "tempo_panes") else quote(v, safe=""))
                for k, v in values.items()
            }
        )


def time_window(
    start: dt.datetime | None, end: dt.datetime | None, *, now: dt.datetime | None = None
) -> tuple[dt.datetime, dt.datetime]:
    """The time range to search for a task's trace: its own time, widened by ``WINDOW_MARGIN``."""
    now = now or dt.datetime.now(dt.UTC)
    start = start or end or now
    end = max(end or now, start)
    return start - WINDOW_MARGIN, end + WINDOW_MARGIN


def _tempo_panes(datasource: str, values: dict[str, str]) -> str:
    # Grafana Explore's URL state: one pane, a TraceQL query that is the trace id.
    pane = {
        "datasource": datasource,
        "queries": [
            {
                "refId": "A",
                "datasource": {"type": "tempo", "uid": datasource},
                "queryType": "traceql",
                "query": values["trace_id"],
            }
        ],
        "range": {"from": values["start_ms"], "to": values["end_ms"]},
    }
    return json.dumps({"trace": pane}, separators=(",", ":"))


def parse_viewer(value: str | None) -> TraceViewer | None:
    """The viewer a ``TASKTRAIL_TRACE_VIEWER`` value describes; None when it is empty."""
    text = (value or "").strip()
    if not text:
        return None
    if "{" in text:
        fields = _placeholders(text)
        unknown = fields - PLACEHOLDERS
        if unknown:
            raise ViewerConfigError(
                f"TASKTRAIL_TRACE_VIEWER: unknown placeholder {sorted(unknown)[0]!r}; "
                f"use {', '.join(sorted(PLACEHOLDERS))}"
            )
        if "trace_id" not in fields:
            raise ViewerConfigError("TASKTRAIL_TRACE_VIEWER: a template needs {trace_id}")
        _check_url(text.split("{", 1)[0] or "http://x", text)
        return TraceViewer("custom", "", text, text)
    name, *rest = text.split()
    preset = PRESETS.get(name.lower())
    if preset is None:
        raise ViewerConfigError(
            f"TASKTRAIL_TRACE_VIEWER: unknown preset {name!r}; use one of {', '.join(PRESETS)} "
            "followed by the viewer's base URL, or a URL template with {trace_id}"
        )
    if not rest:
        raise ViewerConfigError(f"TASKTRAIL_TRACE_VIEWER: {name} needs a base URL after it")
    base, options = rest[0].rstrip("/"), dict(_option(o) for o in rest[1:])
    _check_url(base, base)
    return TraceViewer(
        name=name.lower(),
        base=base,
        trace_template=preset.trace,
        span_template=preset.span or preset.trace,
        datasource=options.pop("datasource", "tempo"),
    )


def _placeholders(template: str) -> set[str]:
    try:
        return {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}
    except ValueError as exc:
        raise ViewerConfigError(f"TASKTRAIL_TRACE_VIEWER: not a valid template: {exc}") from None


def _option(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or key != "datasource" or not value:
        raise ViewerConfigError(
            f"TASKTRAIL_TRACE_VIEWER: unknown option {text!r} (only datasource=<uid>, for tempo)"
        )
    return key, value


def _check_url(url: str, shown: str) -> None:
    if not re.match(r"^https?://[^\s/]+", url):
        raise ViewerConfigError(
            f"TASKTRAIL_TRACE_VIEWER: {shown!r} does not start with http:// or https:// and a host"
        )

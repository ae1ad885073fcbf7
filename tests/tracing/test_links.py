"""Trace viewer links: every preset, custom templates, bad settings, and when no link shows."""

from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from dashboard.templatetags.trace_links import attempt_trace_link, trace_link
from tracing.links import WINDOW_MARGIN, ViewerConfigError, parse_viewer

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
START = dt.datetime(2026, 11, 23, 12, 0, 0, tzinfo=dt.UTC)
END = START + dt.timedelta(seconds=30)
START_S = int((START - WINDOW_MARGIN).timestamp())
END_S = int((END + WINDOW_MARGIN).timestamp()) + 1


@pytest.mark.parametrize(
    ("setting", "trace_url", "span_url"),
    [
        (
            "jaeger http://jaeger:16686/",
            f"http://jaeger:16686/trace/{TRACE}",
            f"http://jaeger:16686/trace/{TRACE}?uiFind={SPAN}",
        ),
        (
            "zipkin http://zipkin:9411",
            f"http://zipkin:9411/zipkin/traces/{TRACE}",
            f"http://zipkin:9411/zipkin/traces/{TRACE}",
        ),
        (
            "honeycomb https://ui.honeycomb.io/acme/environments/prod",
            f"https://ui.honeycomb.io/acme/environments/prod/trace?trace_id={TRACE}"
            f"&trace_start_ts={START_S}&trace_end_ts={END_S}",
            f"https://ui.honeycomb.io/acme/environments/prod/trace?trace_id={TRACE}&span={SPAN}"
            f"&trace_start_ts={START_S}&trace_end_ts={END_S}",
        ),
        (
            "signoz https://signoz.example.com",
            f"https://signoz.example.com/trace/{TRACE}",
            f"https://signoz.example.com/trace/{TRACE}",
        ),
        (
            "datadog https://app.datadoghq.eu",
            f"https://app.datadoghq.eu/apm/trace/{TRACE}",  # 128-bit ids accepted
            f"https://app.datadoghq.eu/apm/trace/{TRACE}",
        ),
    ],
)
def test_presets(setting, trace_url, span_url):
    viewer = parse_viewer(setting)
    assert viewer is not None
    assert viewer.trace_url(TRACE, START, END) == trace_url
    assert viewer.span_url(TRACE, SPAN, START, END) == span_url
    assert viewer.span_url(TRACE, None, START, END) == trace_url  # no span id: the whole trace


def test_tempo_opens_grafana_explore_on_the_trace_in_the_task_window():
    viewer = parse_viewer("tempo https://grafana.example.com datasource=tempo-prod")
    assert viewer is not None
    url = viewer.trace_url(TRACE.upper(), START, END)
    assert url is not None
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "grafana.example.com", "/explore")
    query = parse_qs(parts.query)
    assert query["schemaVersion"] == ["1"]
    [pane] = json.loads(unquote(query["panes"][0])).values()
    assert pane["datasource"] == "tempo-prod"
    [target] = pane["queries"]
    assert (target["queryType"], target["query"]) == ("traceql", TRACE)
    assert target["datasource"] == {"type": "tempo", "uid": "tempo-prod"}
    assert pane["range"] == {
        "from": str(int((START - WINDOW_MARGIN).timestamp() * 1000)),
        "to": str(int((END + WINDOW_MARGIN).timestamp() * 1000) + 1),
    }


def test_custom_template_with_every_placeholder():
    viewer = parse_viewer(
        "https://logs.example.com/search?q=dd.trace_id:{trace_id_dd64}&t={trace_id}&s={span_id}"
        "&sd={span_id_dec}&from={start_ms}&to={end_ms}&a={start_s}&b={end_s}"
    )
    assert viewer is not None
    url = viewer.span_url(TRACE, SPAN, START, END)
    assert url == (
        f"https://logs.example.com/search?q=dd.trace_id:{int(TRACE[16:], 16)}&t={TRACE}&s={SPAN}"
        f"&sd={int(SPAN, 16)}&from={START_S * 1000}&to={(END_S - 1) * 1000 + 1}"
        f"&a={START_S}&b={END_S}"
    )
    assert int(TRACE[16:], 16) == 11803532876627986230  # the low 64 bits, as Datadog logs show


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("kibana https://k", "unknown preset"),
        ("jaeger", "needs a base URL"),
        ("jaeger jaeger:16686", "http:// or https://"),
        ("tempo https://g colour=blue", "unknown option"),
        ("https://x/{trace}", "unknown placeholder"),
        ("https://x/{span_id}", "needs {trace_id}"),
        ("https://x/{trace_id", "not a valid template"),
    ],
)
def test_bad_settings_say_why(value, message):
    with pytest.raises(ViewerConfigError, match=message):
        parse_viewer(value)


def test_empty_setting_means_no_viewer():
    assert parse_viewer("") is None and parse_viewer(None) is None


def test_malformed_ids_give_no_url():
    viewer = parse_viewer("jaeger http://j")
    assert viewer is not None
    assert viewer.trace_url("not-a-trace-id") is None
    assert viewer.span_url(TRACE, "xyz") == f"http://j/trace/{TRACE}"


@pytest.mark.parametrize("tail", ["\n", "\r\n", " ", "0", "\x00"])
def test_an_id_with_anything_after_it_gives_no_url(tail):
    viewer = parse_viewer("jaeger http://j")
    assert viewer is not None
    assert viewer.trace_url(TRACE + tail) is None
    assert viewer.span_url(TRACE + tail, SPAN) is None
    # a span id that is not whole: the trace's link, without selecting a span
    assert viewer.span_url(TRACE, SPAN + tail) == f"http://j/trace/{TRACE}"


def row(**fields):
    base = {
        "trace_id": TRACE,
        "trace_sampled": True,
        "published_at": START,
        "first_seen_at": START,
        "finished_at": END,
        "updated_at": END,
    }
    return SimpleNamespace(**(base | fields))


def test_tags_render_links_only_for_sampled_traces(settings):
    settings.TASKTRAIL_TRACE_VIEWER = "jaeger http://jaeger:16686"
    html = trace_link(row())
    assert f'href="http://jaeger:16686/trace/{TRACE}"' in html
    assert 'rel="noopener noreferrer"' in html
    attempt = SimpleNamespace(span_id=SPAN, published_at=START, started_at=START, finished_at=END)
    assert f"uiFind={SPAN}" in attempt_trace_link(row(), attempt)
    assert trace_link(row(trace_sampled=False)) == ""
    assert trace_link(row(trace_sampled=None)) == ""
    assert trace_link(row(trace_id=None)) == ""
    assert attempt_trace_link(row(trace_sampled=False), attempt) == ""


def test_tags_render_nothing_without_a_viewer(settings):
    settings.TASKTRAIL_TRACE_VIEWER = ""
    assert trace_link(row()) == ""

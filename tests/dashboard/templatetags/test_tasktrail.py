"""Times in the viewer's zone with the zone named, short task names, retry lineage."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from django.utils import timezone

from dashboard.templatetags.tasktrail import class_name, lineage, task_label, when, zone_name

NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
NOW = dt.datetime(2025, 7, 1, 18, 0, 0, tzinfo=dt.UTC)


@pytest.fixture
def in_new_york(monkeypatch):
    monkeypatch.setattr(timezone, "now", lambda: NOW)
    with timezone.override(NEW_YORK):
        yield


def test_when_shows_the_time_in_the_active_zone_with_the_zone_named(in_new_york):
    html = when(NOW - dt.timedelta(minutes=2, seconds=5))
    assert ">13:57:55 EDT <span" in html


def test_when_leaves_the_zone_to_a_column_header_that_names_it(in_new_york):
    html = when(NOW - dt.timedelta(minutes=2, seconds=5), zone=False)
    assert ">13:57:55 <span" in html
    assert 'title="2025-07-01 13:57:55.000 America/New_York"' in html  # the title keeps it
    assert zone_name() == "EDT"


def test_when_carries_the_instant_in_utc_for_the_script(in_new_york):
    html = when(NOW - dt.timedelta(seconds=30))
    assert 'datetime="2025-07-01T17:59:30+00:00"' in html


def test_when_puts_the_relative_time_beside(in_new_york):
    assert '<span class="ago">2m ago</span>' in when(NOW - dt.timedelta(minutes=2, seconds=5))


def test_when_tells_attempts_a_second_apart_apart(in_new_york):
    first = when(NOW - dt.timedelta(seconds=3))
    second = when(NOW - dt.timedelta(seconds=2))
    assert first != second
    assert ">13:59:57 EDT" in first
    assert ">13:59:58 EDT" in second


def test_when_adds_the_date_when_it_is_not_today(in_new_york):
    assert ">28 Jun 09:15:00 EDT <span" in when(dt.datetime(2025, 6, 28, 13, 15, tzinfo=dt.UTC))


def test_when_adds_the_year_when_it_is_not_this_year(in_new_york):
    assert ">3 Jan 2024 07:00:00 EST <span" in when(dt.datetime(2024, 1, 3, 12, tzinfo=dt.UTC))


def test_when_without_a_time_is_a_dash():
    assert when(None) == "—"


@pytest.mark.parametrize(
    ("name", "prefix", "label"),
    [
        ("workers.tasks.send_invoice", "workers.tasks.", "send_invoice"),
        ("shop.billing.send", "shop.", "billing.send"),  # apart from shop.mail.send
        ("other.send", "shop.", "other.send"),  # not under the prefix: in full
        ("workers.tasks.send_invoice", "", "workers.tasks.send_invoice"),
        ("send_invoice", "", "send_invoice"),
        (None, "shop.", ""),
        ("", "", ""),
    ],
)
def test_task_label_drops_the_shared_module_path(name, prefix, label):
    assert task_label(name, prefix) == label


def test_lineage_names_both_sides_with_links():
    html = lineage("a1b2c3d4-0000-4000-8000-000000000001", "e5f6a7b8-0000-4000-8000-000000000002")
    assert html == (
        '<span class="lineage">retry of <a class="mono" '
        'href="/tasks/a1b2c3d4-0000-4000-8000-000000000001/" '
        'title="a1b2c3d4-0000-4000-8000-000000000001">a1b2c3d4…</a> · retried as '
        '<a class="mono" href="/tasks/e5f6a7b8-0000-4000-8000-000000000002/" '
        'title="e5f6a7b8-0000-4000-8000-000000000002">e5f6a7b8…</a></span>'
    )


def test_lineage_is_empty_for_a_task_that_is_neither():
    assert lineage(None, "") == ""


@pytest.mark.parametrize(
    ("dotted", "shown"),
    [("shop.errors.PaymentDeclined", "PaymentDeclined"), ("ValueError", "ValueError"), (None, "")],
)
def test_class_name_drops_the_module_of_an_exception(dotted, shown):
    assert class_name(dotted) == shown

"""A person's time zone: chosen on Preferences, else the browser's cookie, else TIME_ZONE."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from dashboard.models import UserPreference
from dashboard.timezones import BROWSER_ZONE_COOKIE

pytestmark = pytest.mark.django_db


def active_zone(client) -> str:
    html = client.get(reverse("preferences")).content.decode()
    return html.split("Times on every page read in <strong>", 1)[1].split("<", 1)[0]


def test_preferences_save_a_chosen_zone(viewer_client, viewer):
    response = viewer_client.post(reverse("preferences"), {"time_zone": "Asia/Tokyo"})
    assert response.status_code == 302
    assert UserPreference.objects.get(user=viewer).time_zone == "Asia/Tokyo"


def test_preferences_refuse_an_unknown_zone(viewer_client, viewer):
    response = viewer_client.post(reverse("preferences"), {"time_zone": "Mars/Olympus"})
    assert response.status_code == 400
    assert UserPreference.objects.filter(user=viewer).exists() is False


def test_zone_defaults_to_time_zone_setting(viewer_client, settings):
    assert active_zone(viewer_client) == settings.TIME_ZONE


def test_zone_follows_the_browser_cookie(viewer_client):
    viewer_client.cookies[BROWSER_ZONE_COOKIE] = "America/New_York"
    assert active_zone(viewer_client) == "America/New_York"


def test_zone_ignores_a_cookie_that_is_not_a_zone(viewer_client, settings):
    viewer_client.cookies[BROWSER_ZONE_COOKIE] = "../../etc/passwd"
    assert active_zone(viewer_client) == settings.TIME_ZONE


def test_zone_chosen_by_the_user_wins_over_the_browser(viewer_client, viewer):
    UserPreference.objects.create(user=viewer, time_zone="Europe/Paris")
    viewer_client.cookies[BROWSER_ZONE_COOKIE] = "America/New_York"
    assert active_zone(viewer_client) == "Europe/Paris"


def test_zone_is_not_left_active_after_the_request(viewer_client, settings):
    viewer_client.cookies[BROWSER_ZONE_COOKIE] = "America/New_York"
    viewer_client.get(reverse("preferences"))
    assert timezone.get_current_timezone_name() == settings.TIME_ZONE


def test_zone_choice_is_read_once_per_session_not_on_every_poll(viewer_client, viewer):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    viewer_client.post(reverse("preferences"), {"time_zone": "Asia/Tokyo"})
    with CaptureQueriesContext(connection) as queries:
        assert active_zone(viewer_client) == "Asia/Tokyo"
        assert active_zone(viewer_client) == "Asia/Tokyo"
    table = UserPreference._meta.db_table
    zone_reads = [q for q in queries if table in q["sql"]]
    assert len(zone_reads) == 2  # the preferences page's own read, once per page; none per request

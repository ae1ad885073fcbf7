"""The Acknowledge form on the Incidents page: POST, CSRF, the row swapped in for htmx."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from dashboard.alerts import rules
from dashboard.alerts.incidents import open_incident
from dashboard.models import AlertIncident, OperatorAction

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def client_in(role: str, **kwargs) -> Client:
    user = User.objects.create_user(f"{role}-view")
    user.groups.add(Group.objects.get(name=role))
    client = Client(**kwargs)
    client.force_login(user)
    return client


@pytest.fixture
def incident() -> AlertIncident:
    verdict = rules.Verdict(rules.QUEUE_STUCK, "emails", "stuck", words="342 waiting")
    opened = open_incident(verdict, timezone.now())
    assert opened is not None
    return opened


def url(incident: AlertIncident) -> str:
    return reverse("incident-acknowledge", args=[incident.pk])


def test_incidents_page_offers_acknowledge_to_an_operator(incident):
    response = client_in("operator").get(reverse("incidents"))
    assert response.content.decode().count(f'hx-post="{url(incident)}"') == 1


def test_incidents_page_offers_no_acknowledge_to_a_viewer(incident):
    response = client_in("viewer").get(reverse("incidents"))
    assert url(incident) not in response.content.decode()


def test_acknowledge_htmx_answers_the_row_with_the_silence(incident):
    response = client_in("operator").post(
        url(incident), {"note": "restarting <b>workers</b>", "silence": "4h"}, headers=HTMX
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith(f'<tr id="incident-{incident.pk}"')
    assert "restarting &lt;b&gt;workers&lt;/b&gt;" in html
    assert "no reminder until" in html


def test_acknowledge_without_htmx_redirects_to_the_incident(incident):
    response = client_in("operator").post(url(incident), {"note": "on it", "silence": "1h"})
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('incidents')}#incident-{incident.pk}"


def test_acknowledge_by_a_viewer_is_403_and_audited(incident):
    response = client_in("viewer").post(url(incident), {"note": "x", "silence": "1h"})
    assert response.status_code == 403
    assert OperatorAction.objects.get().outcome == "refused"


def test_acknowledge_with_an_unknown_silence_changes_nothing_and_says_why(incident):
    response = client_in("operator").post(
        url(incident), {"note": "x", "silence": "99h"}, follow=True
    )
    assert "Choose how long to silence reminders." in response.content.decode()
    assert AlertIncident.objects.get(pk=incident.pk).silenced_until is None


def test_acknowledge_htmx_without_a_note_answers_422_with_the_row_saying_why(incident):
    response = client_in("operator").post(
        url(incident), {"note": " ", "silence": "1h"}, headers=HTMX
    )
    assert response.status_code == 422
    assert "Say what is being done: a note is required." in response.content.decode()


def test_acknowledge_needs_the_csrf_token(incident):
    client = client_in("operator", enforce_csrf_checks=True)
    response = client.post(url(incident), {"note": "x", "silence": "1h"})
    assert response.status_code == 403
    assert AlertIncident.objects.get(pk=incident.pk).acknowledged_at is None


def test_acknowledge_answers_405_to_get(incident):
    assert client_in("operator").get(url(incident)).status_code == 405


@pytest.mark.parametrize("silence", ["1h", "99h"])
@pytest.mark.parametrize("headers", [HTMX, {}])
def test_someone_without_a_role_gets_the_message_and_nothing_of_the_incident(
    incident, silence, headers
):
    """A login without the view permission is told why, never shown the incident's row (its
    queue, figures, who acknowledged it and their note)."""
    client_in("operator").post(url(incident), {"note": "secret <b>plan</b>", "silence": "1h"})
    nobody = Client()
    nobody.force_login(User.objects.create_user("no-role"))
    response = nobody.post(url(incident), {"note": "x", "silence": silence}, headers=headers)
    html = response.content.decode()
    refused = silence == "1h"  # an unknown silence is an input error, answered before the service
    if headers:
        assert response.status_code == (403 if refused else 422)
        assert html.lstrip().startswith(f'<tr id="incident-{incident.pk}"><td colspan="6">')
    else:
        assert response.status_code == (403 if refused else 400)
    message = "no-role may not" if refused else "Choose how long to silence reminders."
    assert message in html
    for leaked in ("emails", "342 waiting", "secret", "operator-view", "incident-open"):
        assert leaked not in html, leaked

"""An operator acknowledges an incident, and support follows audit rows to what they touched."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone

from dashboard.alerts import rules
from dashboard.alerts.incidents import open_incident
from dashboard.models import AlertIncident, OperatorAction, OperatorActionTarget
from tests.browser.conftest import NO_PLAYWRIGHT, log_in, record_success, user_in

expect = pytest.importorskip("playwright.sync_api", reason=NO_PLAYWRIGHT).expect
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def stuck_queue() -> AlertIncident:
    verdict = rules.Verdict(
        rules.QUEUE_STUCK, "emails", "stuck", words="342 waiting, no consumer",
        cause="nobody consumes it", fired=("no_consumer",),
    )  # fmt: skip
    incident = open_incident(verdict, timezone.now())
    assert incident is not None
    return incident


def test_operator_acknowledges_an_incident_and_finds_it_in_the_audit(page):
    incident = stuck_queue()
    log_in(page, user_in("operator"), "/incidents/")
    row = page.locator(f"#incident-{incident.pk}")
    row.get_by_text("Acknowledge…").click()
    row.get_by_label("Note (kept in the audit log)").fill("restarting the email workers")
    row.get_by_label("No reminder mail for").select_option("4h")
    row.get_by_role("button", name="Acknowledge").click()
    expect(row).to_contain_text("Acknowledged by browser-operator")
    expect(row).to_contain_text("“restarting the email workers”")
    expect(row).to_contain_text("no reminder until")
    expect(row).to_contain_text("Acknowledged queue emails stuck: no reminder for 4 hours.")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit").click()
    page.get_by_role("link", name=f"incident {incident.pk}: queue emails stuck").click()
    expect(page).to_have_url(re.compile(rf"/incidents/#incident-{incident.pk}$"))
    expect(page.locator(f"#incident-{incident.pk}")).to_contain_text("Acknowledged by")


def test_support_follows_a_bulk_audit_row_to_one_of_its_tasks(page):
    kept = record_success(name="shop.send_invoice", input_id="19817")
    refused = record_success(name="shop.send_invoice", input_id="19818")
    action = OperatorAction.objects.create(
        username="olga", kind="retry", bulk=True, scope="2 selected tasks", target_count=2,
        reason="customer asked", outcome="refused", message="Refused: a SUCCESS task.",
    )  # fmt: skip
    OperatorActionTarget.objects.bulk_create(
        OperatorActionTarget(action=action, task_id=t, outcome="refused", message="a SUCCESS task")
        for t in (kept, refused)
    )
    log_in(page, user_in("viewer"), "/audit/")
    page.get_by_role("link", name="2 selected tasks").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Retry (bulk) by olga")
    page.get_by_role("link", name=refused).click()
    expect(page).to_have_url(re.compile(r"/tasks/.+/$"))
    expect(page.locator("main")).to_contain_text("19818")

"""Approving and rejecting work from the keyboard alone: Tab, Space, typing and Enter."""

from django.contrib.auth.models import User
from playwright.sync_api import expect

from approvals.models import ActionRequest, RequestStatus
from responseportal.models import Organization

from ..approvals_helpers import submit
from .conftest import go, sign_in, tab_to


def test_admin_rejects_from_the_queue_with_the_keyboard(portal):
    acme = Organization.objects.get(slug="acme")
    operator = User.objects.get(username="operator")
    isolate = submit(acme, operator, endpoints=["web-01.acme.test"])
    scan = submit(
        acme,
        operator,
        key="scan_for_malware",
        endpoints=["web-02.acme.test"],
        parameters={"endpoints": ["web-02.acme.test"]},
    )
    sign_in(portal, "acme-admin")
    go(portal, "/orgs/acme/queue/")

    checkbox = portal.get_by_label("Select Scan for Malware requested by operator")
    tab_to(portal, checkbox)
    portal.keyboard.press("Space")
    expect(checkbox).to_be_checked()
    tab_to(portal, portal.get_by_label("Reason (required to reject)"))
    portal.keyboard.type("Scanned yesterday: nothing new since")
    tab_to(portal, portal.get_by_role("button", name="Reject selected"))
    portal.keyboard.press("Enter")

    expect(portal.get_by_text("Rejected 1 request.")).to_be_visible()
    scan.refresh_from_db()
    assert (scan.status, scan.decision_reason) == (
        RequestStatus.REJECTED,
        "Scanned yesterday: nothing new since",
    )
    isolate.refresh_from_db()
    assert isolate.status == RequestStatus.PENDING


def test_admin_approves_on_the_request_page_with_the_keyboard(portal):
    acme = Organization.objects.get(slug="acme")
    request = submit(acme, User.objects.get(username="operator"))
    sign_in(portal, "acme-admin")
    go(portal, f"/orgs/acme/requests/{request.uuid}/")

    tab_to(portal, portal.get_by_label("Comment (optional)"))
    portal.keyboard.type("Confirmed with the SOC")
    tab_to(portal, portal.get_by_role("button", name="Approve", exact=True))
    portal.keyboard.press("Enter")

    expect(portal.get_by_text("Approved: Isolate Endpoint.")).to_be_visible()
    request = ActionRequest.objects.get(pk=request.pk)
    assert request.decided_by.username == "acme-admin"
    assert request.decision_reason == "Confirmed with the SOC"
    assert request.status not in {RequestStatus.PENDING, RequestStatus.REJECTED}

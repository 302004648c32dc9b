"""The main journeys, through the real pages with real clicks and typing."""

import re

from django.contrib.auth.models import User
from playwright.sync_api import expect

from approvals.models import ActionRequest, RequestStatus
from responseportal.models import Organization

from ..approvals_helpers import submit
from .conftest import go, sign_in

AUTO_APPROVAL_SENTENCE = "Auto-approval must be enabled in order to use this response action."


def test_operator_is_refused_osquery_while_auto_approval_is_off(portal):
    sign_in(portal, "operator")
    go(portal, "/orgs/acme/requests/new/run_osquery/")
    portal.get_by_label("Endpoints").fill("web-01.acme.test")
    portal.get_by_label("Query").fill("SELECT pid, name FROM processes;")
    portal.get_by_role("button", name="Submit request").click()
    expect(portal.get_by_text(AUTO_APPROVAL_SENTENCE).first).to_be_visible()
    assert not ActionRequest.objects.exists()


def test_a_bad_sha1_is_named_and_the_other_input_kept(portal):
    sign_in(portal, "operator")
    go(portal, "/orgs/acme/requests/new/terminate_process/")
    portal.get_by_label("Endpoint").fill("web-07.acme.test")
    portal.get_by_label("SHA-1").fill("not-a-hash")
    portal.get_by_label("File name").fill("evil.exe")
    portal.get_by_role("button", name="Submit request").click()
    expect(
        portal.get_by_text("is not a SHA-1 hash: expected 40 hexadecimal characters.")
    ).to_be_visible()
    expect(portal.get_by_label("Endpoint")).to_have_value("web-07.acme.test")
    expect(portal.get_by_label("File name")).to_have_value("evil.exe")
    assert not ActionRequest.objects.exists()


def test_operator_submits_and_admin_approves_from_the_queue(portal, browser):
    sign_in(portal, "operator")
    go(portal, "/orgs/acme/requests/new/isolate_endpoint/")
    portal.get_by_label("Endpoints").fill("web-01.acme.test\nweb-02.acme.test")
    portal.get_by_label("Description").fill("Beaconing to a known C2 address")
    portal.get_by_role("button", name="Submit request").click()
    expect(portal.get_by_text("Pending approval").first).to_be_visible()
    request = ActionRequest.objects.get()
    assert request.status == RequestStatus.PENDING

    admin = browser.new_context().new_page()
    admin.base_url = portal.base_url
    sign_in(admin, "acme-admin")
    go(admin, "/orgs/acme/queue/")
    admin.get_by_label(re.compile("Select Isolate Endpoint")).check()
    admin.get_by_role("button", name="Approve selected").click()
    expect(admin.get_by_text("Approved 1 request.")).to_be_visible()
    request.refresh_from_db()
    assert request.status != RequestStatus.PENDING
    assert request.decided_by.username == "acme-admin"
    admin.context.close()


def test_admin_rejects_three_requests_with_one_reason(portal):
    acme = Organization.objects.get(slug="acme")
    operator = User.objects.get(username="operator")
    for n in range(3):
        submit(acme, operator, endpoints=[f"host-{n}.acme.test"])
    sign_in(portal, "acme-admin")
    go(portal, "/orgs/acme/queue/")
    for box in portal.get_by_role("checkbox").all():
        box.check()
    portal.get_by_label("Reason (required to reject)").fill("Wrong hosts: these are lab machines")
    portal.get_by_role("button", name="Reject selected").click()
    expect(portal.get_by_text("Rejected 3 requests.")).to_be_visible()
    assert set(ActionRequest.objects.values_list("status", "decision_reason")) == {
        (RequestStatus.REJECTED, "Wrong hosts: these are lab machines")
    }


def test_markup_in_a_description_shows_as_text(portal):
    hostile = '<script>alert("x")</script> "><img src=x onerror=alert(1)>'
    sign_in(portal, "operator")
    go(portal, "/orgs/acme/requests/new/isolate_endpoint/")
    portal.get_by_label("Endpoints").fill("web-01.acme.test")
    portal.get_by_label("Description").fill(hostile)
    portal.get_by_role("button", name="Submit request").click()
    expect(portal.get_by_text(hostile).first).to_be_visible()
    portal.reload()
    assert portal.dialogs == []
    assert portal.locator("img[src=x]").count() == 0


def test_wrong_role_gets_the_403_page_and_an_outsider_the_404_page(portal, browser):
    sign_in(portal, "operator")
    response = portal.goto(portal.base_url + "/orgs/acme/queue/")
    assert response.status == 403
    expect(portal.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(portal.get_by_role("link", name="Response Portal")).to_be_visible()

    outsider = browser.new_context().new_page()
    outsider.base_url = portal.base_url
    sign_in(outsider, "globex-admin")
    response = outsider.goto(portal.base_url + "/orgs/acme/")
    assert response.status == 404
    expect(outsider.get_by_role("heading", name="Not found")).to_be_visible()
    outsider.context.close()

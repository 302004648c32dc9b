"""Break-glass and undo through the real pages: an admin allows break-glass, an operator breaks
glass, another admin reviews it; an operator undoes an isolation and an admin approves it."""

import re

from playwright.sync_api import expect

from approvals.models import ActionRequest, ApprovalMode, ApprovalSettings, RequestStatus
from approvals.state import isolated_endpoints
from audit.models import AuditEvent
from responseportal.models import Organization

from .conftest import go, sign_in

JUSTIFICATION = "Ransomware encrypting shares from this host right now"


def test_an_operator_breaks_glass_and_an_admin_reviews_it(portal, browser_of):
    admin = browser_of("acme-admin")
    go(admin, "/orgs/acme/settings/approval/")
    admin.get_by_label("Allow break-glass").check()
    admin.locator('input[name="break_glass_actions"][value="isolate_endpoint"]').check()
    admin.get_by_role("button", name="Save approval settings").click()
    expect(admin.get_by_text("Approval settings saved.")).to_be_visible()
    settings = ApprovalSettings.objects.get(organization__slug="acme")
    assert (settings.break_glass_enabled, settings.break_glass_actions) == (
        True,
        ["isolate_endpoint"],
    )

    sign_in(portal, "operator")
    go(portal, "/orgs/acme/requests/new/isolate_endpoint/")
    portal.get_by_label("Endpoints").fill("web-01.acme.test")
    portal.get_by_label("Description").fill("Encrypting file shares")
    portal.get_by_label(re.compile("Break glass")).check()
    portal.get_by_label("Justification").fill("too short")
    portal.get_by_role("button", name="Submit request").click()
    expect(portal.get_by_text("needs at least 20 characters")).to_be_visible()
    assert not ActionRequest.objects.exists()

    portal.get_by_label(re.compile("Break glass")).check()
    portal.get_by_label("Justification").fill(JUSTIFICATION)
    portal.get_by_role("button", name="Submit request").click()
    expect(portal.get_by_text("Break-glass: the request runs now.")).to_be_visible()
    expect(portal.locator("h1").get_by_text("break-glass")).to_be_visible()
    run = ActionRequest.objects.get()
    assert run.approval_mode == ApprovalMode.BREAK_GLASS
    assert run.status != RequestStatus.PENDING

    go(admin, "/orgs/acme/")
    expect(admin.locator("#unreviewed-break-glass")).to_contain_text("Isolate Endpoint")
    admin.get_by_role("link", name="Needs review").first.click()
    expect(admin.locator("#needs-review")).to_contain_text(JUSTIFICATION)
    admin.locator("#needs-review").get_by_role("link").first.click()
    expect(admin.locator("#justification")).to_have_text(JUSTIFICATION)
    admin.get_by_role("radio", name="Flag").check()
    admin.get_by_role("button", name="Save review").click()
    expect(admin.get_by_text("Give a comment when you flag")).to_be_visible()
    admin.get_by_role("radio", name="Accept").check()
    admin.get_by_label("Comment (required to flag)").fill("Right call: the host was encrypting.")
    admin.get_by_role("button", name="Save review").click()
    expect(admin.get_by_text("Break-glass run accepted")).to_be_visible()
    expect(admin.locator("#review")).to_contain_text("Accepted by acme-admin")

    run.refresh_from_db()
    assert (run.review_outcome, run.reviewed_by.username) == ("accept", "acme-admin")
    assert AuditEvent.objects.filter(request=run, verb="request.reviewed").count() == 1
    go(admin, "/orgs/acme/reviews/")
    expect(admin.get_by_text("No break-glass run waits for a review.")).to_be_visible()


def test_an_operator_undoes_an_isolation(portal, browser_of):
    acme = Organization.objects.get(slug="acme")
    settings = ApprovalSettings.for_organization(acme)
    settings.auto_approval_enabled = True
    settings.auto_approved_actions = ["isolate_endpoint"]
    settings.save()

    sign_in(portal, "operator")
    go(portal, "/orgs/acme/requests/new/isolate_endpoint/")
    portal.get_by_label("Endpoints").fill("web-01.acme.test\nweb-02.acme.test")
    portal.get_by_label("Description").fill("Beaconing to a known C2 address")
    portal.get_by_role("button", name="Submit request").click()
    expect(portal.locator("#request-status")).to_contain_text("Successful", timeout=20_000)
    portal.reload()
    isolation = ActionRequest.objects.get(action__key="isolate_endpoint")
    assert isolated_endpoints(acme, ["web-01.acme.test", "web-02.acme.test"]) == {
        "web-01.acme.test",
        "web-02.acme.test",
    }

    portal.get_by_role("button", name="Undo").click()
    expect(portal.locator("h1")).to_contain_text("Restore Connection")
    expect(portal.locator("#undoes")).to_contain_text(str(isolation.uuid))
    expect(portal.locator("#request-status")).to_contain_text("Pending approval")
    restore = ActionRequest.objects.get(action__key="restore_connection")
    assert restore.undoes == isolation
    assert restore.parameters == {"endpoints": ["web-01.acme.test", "web-02.acme.test"]}

    portal.locator("#undoes").get_by_role("link").click()
    expect(portal.locator("#undone-by")).to_contain_text(str(restore.uuid))
    expect(portal.get_by_role("button", name="Undo")).to_have_count(0)

    admin = browser_of("acme-admin")
    go(admin, f"/orgs/acme/requests/{restore.uuid}/")
    admin.get_by_role("button", name="Approve").click()
    expect(admin.locator("#request-status")).to_contain_text("Successful", timeout=20_000)
    assert isolated_endpoints(acme, ["web-01.acme.test", "web-02.acme.test"]) == set()

"""Two-person approval and the settings preview, through the real pages in Chromium."""

import re

from django.contrib.auth.models import User
from playwright.sync_api import expect

from approvals.models import ActionRequest, ApprovalSettings, RequestStatus
from responseportal.models import Membership, Organization, Role

from ..approvals_helpers import submit
from .conftest import PASSWORD, go


def _second_admin(acme) -> User:
    user = User.objects.create_user("acme-admin-2", "acme-admin-2@example.com", PASSWORD)
    Membership.objects.create(user=user, organization=acme, role=Role.ADMIN)
    return user


def test_two_admins_approve_one_request_in_two_browsers(portal, browser_of):
    acme = Organization.objects.get(slug="acme")
    _second_admin(acme)
    settings = ApprovalSettings.for_organization(acme)
    settings.approvals_needed = {"isolate_endpoint": 2}
    settings.save()
    action_request = submit(acme, User.objects.get(username="operator"))
    page = f"/orgs/acme/requests/{action_request.uuid}/"

    first = browser_of("acme-admin")
    second = browser_of("acme-admin-2")
    go(first, page)
    expect(first.locator("#approvals")).to_contain_text("0 of 2 approvals")
    first.get_by_label("Comment (optional)").fill("Host confirmed")
    first.get_by_role("button", name="Approve").click()
    expect(
        first.get_by_text(
            "Your approval is recorded: Isolate Endpoint has 1 of the 2 approvals it needs"
        )
    ).to_be_visible()
    expect(first.locator("#approvals")).to_contain_text("1 of 2 approvals")
    expect(first.locator("#approvals")).to_contain_text("Approved by acme-admin at")
    expect(first.get_by_role("button", name="Approve", exact=True)).to_have_count(0)
    # The first admin's queue no longer offers it; the second admin's shows what it needs.
    go(first, "/orgs/acme/queue/")
    expect(first.get_by_text("Nothing waits for a decision here.")).to_be_visible()
    go(second, "/orgs/acme/queue/")
    expect(second.locator(".approvals-to-go")).to_have_text(
        "1 of 2 approvals; needs 1 more approval"
    )
    second.get_by_role("link", name="Isolate Endpoint").click()
    second.get_by_role("button", name="Approve").click()
    expect(second.get_by_text("Approved: Isolate Endpoint.")).to_be_visible()
    expect(second.locator("#approvals")).to_contain_text("2 of 2 approvals")
    action_request.refresh_from_db()
    assert action_request.status in {
        RequestStatus.APPROVED,
        RequestStatus.QUEUED,
        RequestStatus.IN_PROGRESS,
        RequestStatus.SUCCESSFUL,
    }
    assert action_request.decided_by.username == "acme-admin-2"
    assert sorted(action_request.approvals.values_list("admin__username", flat=True)) == [
        "acme-admin",
        "acme-admin-2",
    ]


def test_the_preview_changes_as_boxes_are_ticked_and_saving_still_works(browser_of):
    acme = Organization.objects.get(slug="acme")
    operator = User.objects.get(username="operator")
    for n in range(3):
        submit(acme, operator, endpoints=[f"web-0{n}.acme.test"])
    submit(acme, operator, key="scan_for_malware", endpoints=["web-09.acme.test"])
    current = ApprovalSettings.for_organization(acme)
    assert not current.auto_approval_enabled
    version = current.version

    admin = browser_of("acme-admin")
    go(admin, "/orgs/acme/settings/approval/")
    preview_button = admin.get_by_role("button", name="Preview", exact=True)
    isolate = admin.locator("#preview tr[data-action='isolate_endpoint']")
    scan = admin.locator("#preview tr[data-action='scan_for_malware']")

    preview_button.click()
    expect(admin.locator("#preview-summary")).to_have_text(
        "0 of 4 requests would have gone differently."
    )
    expect(isolate.locator("[data-outcome='at_once']")).to_have_text("0 → 0")

    admin.get_by_label("Enable automatic approval").check()
    preview_button.click()
    expect(isolate.locator("[data-outcome='at_once']")).to_have_text("0 → 3")
    expect(scan.locator("[data-outcome='at_once']")).to_have_text("0 → 1")
    expect(admin.locator("#preview-summary")).to_have_text(
        "4 of 4 requests would have gone differently."
    )

    auto_scan = admin.locator("input[name='auto_approved_actions'][value='scan_for_malware']")
    auto_scan.uncheck()
    admin.get_by_label("Approvals needed for Scan for Malware").select_option("2")
    preview_button.click()
    expect(scan.locator("[data-outcome='at_once']")).to_have_text("0 → 0")
    expect(scan.locator("[data-outcome='waited']")).to_contain_text("1 → 1")
    expect(scan.locator("[data-outcome='waited']")).to_contain_text("for 2 or 3 admins: 0 → 1")
    expect(admin.get_by_label("Enable automatic approval")).to_be_checked()
    expect(auto_scan).not_to_be_checked()
    settings = ApprovalSettings.for_organization(acme)
    assert (settings.version, settings.auto_approval_enabled) == (version, False)

    admin.get_by_role("button", name="Save approval settings").click()
    expect(admin.get_by_text("Approval settings saved.")).to_be_visible()
    settings = ApprovalSettings.objects.get(organization=acme)
    assert settings.auto_approval_enabled
    assert "scan_for_malware" not in settings.auto_approved_actions
    assert "isolate_endpoint" in settings.auto_approved_actions
    assert settings.approvals_needed == {"scan_for_malware": 2}
    assert settings.version == version + 1
    assert ActionRequest.objects.filter(status=RequestStatus.PENDING).count() == 4
    assert re.search(r"/orgs/acme/settings/approval/$", admin.url)

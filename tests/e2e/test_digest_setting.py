"""The digest interval on the approval settings page, through the real page in Chromium."""

from playwright.sync_api import expect

from approvals.models import ApprovalSettings
from responseportal.models import Organization

from .conftest import go

LABEL = "Announce automatic approvals every (minutes)"


def test_an_admin_sets_the_digest_interval_and_a_bad_one_is_refused(portal, browser_of):
    acme = Organization.objects.get(slug="acme")
    before = ApprovalSettings.for_organization(acme).digest_minutes
    page = browser_of("acme-admin")
    go(page, "/orgs/acme/settings/approval/")
    field = page.get_by_label(LABEL)
    expect(field).to_have_value(str(before))
    # Past a day: the browser refuses it already (the server's message is tested without it).
    field.fill("1441")
    page.get_by_role("button", name="Save approval settings").click()
    assert field.evaluate("element => element.validity.rangeOverflow")
    assert ApprovalSettings.for_organization(acme).digest_minutes == before
    page.get_by_label(LABEL).fill("0")
    page.get_by_role("button", name="Save approval settings").click()
    expect(page.get_by_text("Approval settings saved.")).to_be_visible()
    expect(page.get_by_label(LABEL)).to_have_value("0")
    assert ApprovalSettings.for_organization(acme).digest_minutes == 0

"""The reminder setting and the close-to-expiry marks, through the real pages in Chromium."""

from datetime import timedelta

from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import expect

from approvals.models import ActionRequest, ApprovalSettings
from responseportal.models import Organization

from ..approvals_helpers import submit
from .conftest import go


def test_an_admin_sets_the_reminder_time_and_a_late_one_is_refused(portal, browser_of):
    acme = Organization.objects.get(slug="acme")
    page = browser_of("acme-admin")
    go(page, "/orgs/acme/settings/approval/")
    field = page.get_by_label("Remind admins after (minutes)")
    expect(field).to_have_value("30")
    # The default lifetime is 72 hours: its last quarter starts after 3240 minutes.
    field.fill("3240")
    page.get_by_role("button", name="Save approval settings").click()
    expect(
        page.get_by_text("Expected at most 3239 minutes, or 0 for no reminders.")
    ).to_be_visible()
    assert ApprovalSettings.for_organization(acme).remind_after_minutes == 30
    page.get_by_label("Remind admins after (minutes)").fill("45")
    page.get_by_role("button", name="Save approval settings").click()
    expect(page.get_by_text("Approval settings saved.")).to_be_visible()
    expect(page.get_by_label("Remind admins after (minutes)")).to_have_value("45")
    assert ApprovalSettings.for_organization(acme).remind_after_minutes == 45


def test_the_queue_and_the_dashboard_show_what_expires_soon(portal, browser_of):
    acme = Organization.objects.get(slug="acme")
    operator = User.objects.get(username="operator")
    close = submit(acme, operator, endpoints=["close-1.acme.test"])
    submit(acme, operator, endpoints=["far-1.acme.test"])
    # Submitted 60 of its 72 hours ago: 12 hours, a sixth of its lifetime, are left.
    submitted_at = timezone.now() - timedelta(hours=60)
    ActionRequest.objects.filter(pk=close.pk).update(
        submitted_at=submitted_at, expires_at=submitted_at + timedelta(hours=72)
    )
    page = browser_of("acme-admin")
    go(page, "/orgs/acme/queue/")
    close_row = page.locator("tr", has_text="close-1.acme.test")
    far_row = page.locator("tr", has_text="far-1.acme.test")
    expect(close_row.get_by_text("Expires soon")).to_be_visible()
    expect(far_row.get_by_text("Expires soon")).to_have_count(0)

    go(page, "/orgs/acme/")
    expect(page.get_by_text("1 request close to expiry")).to_be_visible()
    section = page.locator("section", has=page.locator("#expiring-heading"))
    section.get_by_role("link", name="Isolate Endpoint").click()
    expect(page).to_have_url(f"{page.base_url}/orgs/acme/requests/{close.uuid}/")

"""The queue's select-all, in the browser: its script ticks the shown requests, and sixty
waiting requests are approved in three clicks."""

from django.contrib.auth.models import User
from playwright.sync_api import expect

from approvals.models import RequestStatus
from audit.models import AuditEvent
from responseportal.models import Organization

from ..approvals_helpers import submit
from .conftest import go, sign_in


def _waiting(count: int):
    acme = Organization.objects.get(slug="acme")
    operator = User.objects.get(username="operator")
    return [submit(acme, operator, endpoints=[f"web-{n:02}.acme.test"]) for n in range(count)]


def test_the_header_checkbox_ticks_and_clears_every_request_shown(portal):
    _waiting(3)
    sign_in(portal, "acme-admin")
    go(portal, "/orgs/acme/queue/")
    rows = portal.locator('input[type="checkbox"][name="requests"]')
    expect(rows).to_have_count(3)

    header = portal.get_by_label("Select every request shown")
    header.check()
    for n in range(3):
        expect(rows.nth(n)).to_be_checked()
    rows.nth(1).uncheck()
    assert header.evaluate("box => box.indeterminate") is True
    header.check()
    header.uncheck()
    for n in range(3):
        expect(rows.nth(n)).not_to_be_checked()


def test_sixty_waiting_requests_are_approved_in_three_clicks(portal):
    requests = _waiting(60)
    sign_in(portal, "acme-admin")
    go(portal, "/orgs/acme/queue/")

    portal.get_by_label("Select all 60 matching requests", exact=False).check()  # 1
    portal.get_by_role("button", name="Approve selected").click()  # 2
    expect(portal.locator("#confirm-count")).to_contain_text("60 pending requests")
    # Sixty approvals, each running at once in the live server's process: give it time.
    portal.get_by_role("button", name="Approve 60 requests").click(timeout=180_000)  # 3

    expect(portal.get_by_text("Approved 60 requests.")).to_be_visible(timeout=180_000)
    pks = [r.pk for r in requests]
    decided = AuditEvent.objects.filter(request_id__in=pks, verb="request.approved")
    assert decided.count() == 60
    assert not any(r.status == RequestStatus.PENDING for r in _refreshed(requests))


def _refreshed(requests):
    for action_request in requests:
        action_request.refresh_from_db()
    return requests

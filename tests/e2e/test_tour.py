"""The README's tour, on the lived-in demo: the dashboard, a decision from the pending e-mail, the
queue with its select-all, the approval settings and the audit log in words.

Every run checks that the pages show what the tour describes. With UPDATE_TOUR=1 it also saves
their screenshots to static/tour/, which the README shows:

    UPDATE_TOUR=1 DATABASE_URL=postgres://… .venv/bin/python -m pytest tests/e2e/test_tour.py
"""

import os
import re

from django.conf import settings
from django.core import mail
from playwright.sync_api import expect

from approvals.demo_history import write_history
from approvals.models import ActionRequest, RequestStatus

from .conftest import PROJECT, VIEWPORT, go, new_page, sign_in

TOUR = PROJECT / "static" / "tour"
UPDATING = os.environ.get("UPDATE_TOUR") == "1"
MAX_HEIGHT = 1100
MAX_BYTES = 200_000


def snapshot(page, name: str, down_to, margin: int = 24) -> None:
    """With UPDATE_TOUR=1, save the page's top, full width, down to the end of `down_to`."""
    if not UPDATING:
        return
    box = down_to.bounding_box()
    height = min(round(box["y"] + box["height"]) + margin, MAX_HEIGHT)
    path = TOUR / f"{name}.png"
    TOUR.mkdir(exist_ok=True)
    page.screenshot(
        path=str(path),
        full_page=True,
        clip={"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height},
    )
    assert path.stat().st_size < MAX_BYTES, f"{path} is {path.stat().st_size:,} bytes"


def approve_link(live_url: str) -> str:
    """The Approve link of the pending e-mail sent to acme-admin, on the live server."""
    sent = [
        message
        for message in mail.outbox
        if message.to == ["acme-admin@example.com"] and "Approval needed" in message.subject
    ]
    assert len(sent) == 1, [message.subject for message in mail.outbox]
    links = re.findall(r"^Approve: (\S+)$", sent[0].body, re.MULTILINE)
    assert len(links) == 1, sent[0].body
    return links[0].replace(settings.PORTAL_URL, live_url)


def test_the_tour_from_the_lived_in_demo(portal, browser, browser_of):
    written = write_history()
    assert written["acme"] > 200 and written["globex"] > 100
    # The three submitted in the last hours, and any left to expire that has not yet.
    waiting = ActionRequest.objects.filter(organization__slug="acme", status=RequestStatus.PENDING)
    assert waiting.count() >= 3

    # 1. A portal in use: the admin's dashboard.
    admin = portal
    sign_in(admin, "acme-admin")
    expect(admin.get_by_role("heading", name="Acme Corporation")).to_be_visible()
    latest = admin.locator("#events-heading + ul")
    expect(latest).to_contain_text("operator requested")
    expect(latest).to_contain_text("request.submitted")
    snapshot(
        admin, "dashboard", admin.get_by_role("heading", name="Time to decision, last 30 days")
    )

    # 2. The operator asks.
    operator = browser_of("operator")
    go(operator, "/orgs/acme/requests/new/")
    operator.get_by_role("link", name=re.compile("^Isolate Endpoint")).click()
    operator.get_by_label("Endpoints").fill("web-01.acme.test\nweb-02.acme.test")
    operator.get_by_label("Description").fill("Beaconing to a known C2 domain")
    mail.outbox.clear()
    operator.get_by_role("button", name="Submit request").click()
    expect(operator.locator("#request-status")).to_contain_text("Pending approval")

    # 3. The admin decides from the e-mail: signed out, the link asks to sign in first.
    reader = new_page(browser, portal.base_url)
    try:
        reader.goto(approve_link(portal.base_url))
        reader.get_by_label("Username").fill("acme-admin")
        reader.get_by_label("Password").fill("demo-password")
        reader.get_by_role("button", name="Sign in").click()
        expect(reader.get_by_role("heading", name="Approve Isolate Endpoint?")).to_be_visible()
        confirm = reader.get_by_role("button", name="Approve")
        snapshot(reader, "email-decision", confirm)
        confirm.click()
        expect(reader.locator("#request-status")).to_contain_text("Successful", timeout=20_000)
        timeline = reader.get_by_role("list").filter(has_text="via e-mail link")
        expect(timeline).to_contain_text("acme-admin approved Isolate Endpoint on 2 endpoints")
    finally:
        reader.context.close()
    expect(operator.locator("#request-status")).to_contain_text("Successful", timeout=20_000)

    # 4. The queue: the demo's waiting requests, all ticked with one click.
    admin.get_by_role("link", name="Pending queue").click()
    rows = admin.locator("main table tbody tr")
    expect(rows).to_have_count(waiting.count())
    admin.get_by_label("Select every request shown").check()
    for box in admin.locator("main table tbody input[type=checkbox]").all():
        expect(box).to_be_checked()
    snapshot(admin, "queue", admin.get_by_role("group", name="Decide the selected requests"))

    # 5. The settings the admin chose over the month.
    admin.get_by_role("link", name="Approval settings").click()
    automatic = admin.get_by_role("region", name="Automatic approval")
    expect(automatic.get_by_label("Enable automatic approval")).to_be_checked()
    expect(automatic.get_by_label("Isolate Endpoint", exact=True)).not_to_be_checked()
    expect(automatic.get_by_label("Scan for Malware", exact=True)).to_be_checked()
    isolate = automatic.locator(".form-check").filter(has_text="Isolate Endpoint")
    snapshot(admin, "approval-settings", isolate, margin=4)

    # 6. The auditor reads the log in words.
    auditor = browser_of("acme-auditor")
    go(auditor, "/orgs/acme/")
    auditor.get_by_role("link", name="Audit log").click()
    expect(
        auditor.get_by_role("row").filter(
            has_text="acme-admin approved Isolate Endpoint on 2 endpoints"
        )
    ).to_have_count(1)
    auditor.get_by_label("Verb", exact=True).select_option("settings.changed")
    auditor.get_by_role("button", name="Filter", exact=True).click()
    changes = auditor.get_by_role("row").filter(has_text="acme-admin changed the approval settings")
    expect(changes).to_have_count(2)
    go(auditor, "/orgs/acme/audit/")
    expect(auditor.get_by_role("link", name="Export the log as CSV")).to_be_visible()
    snapshot(auditor, "audit-log", auditor.locator("main table tbody tr").nth(7), margin=1)

"""The README's tour: the pending queue, the approval settings and the audit log.

Every run checks that the pages show what the tour describes. With UPDATE_TOUR=1 it also saves
their screenshots to static/tour/, which the README shows:

    UPDATE_TOUR=1 DATABASE_URL=postgres://… .venv/bin/python -m pytest tests/e2e/test_tour.py
"""

import os
import re

from playwright.sync_api import expect

from .conftest import PROJECT, VIEWPORT, go, sign_in
from .history import acme_history

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


def test_the_tour_shows_the_queue_the_settings_and_the_audit_log(portal, browser_of):
    history = acme_history()

    admin = portal
    sign_in(admin, "acme-admin")
    admin.get_by_role("link", name="Pending queue").click()
    rows = admin.locator("main table tbody tr")
    expect(rows).to_have_count(len(history.pending))
    expect(rows.first).to_contain_text("Pending approval")
    expect(admin.get_by_text("and 5 more")).to_be_visible()
    admin.get_by_label("Select Isolate Endpoint requested by operator").first.check()
    decide = admin.get_by_role("group", name="Decide the selected requests")
    snapshot(admin, "queue", decide)

    admin.get_by_role("link", name="Approval settings").click()
    expect(admin.get_by_label("Enable automatic approval")).to_be_checked()
    expect(admin.get_by_label("Isolate Endpoint", exact=True)).not_to_be_checked()
    isolate = admin.locator(".form-check").filter(has_text="Isolate Endpoint")
    snapshot(admin, "approval-settings", isolate, margin=4)

    auditor = browser_of("acme-auditor")
    go(auditor, f"/orgs/{history.organization.slug}/")
    auditor.get_by_role("link", name="Audit log").click()
    expect(auditor.get_by_role("row", name=re.compile("settings.changed"))).to_be_visible()
    expect(auditor.get_by_role("link", name="Export the log as CSV")).to_be_visible()
    snapshot(auditor, "audit-log", auditor.locator("main table tbody tr").nth(9), margin=1)

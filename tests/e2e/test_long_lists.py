"""A request for 100 endpoints keeps the lists readable: nothing pushes the page sideways."""

import re

from django.contrib.auth.models import User
from playwright.sync_api import expect

from responseportal.models import Organization

from ..approvals_helpers import submit
from .conftest import VIEWPORT, go, sign_in

# A hostname's labels may be 63 characters long, with no hyphen to break the line at.
LONG_LABEL = "{n:03}" + "x" * 60


def assert_fits_the_window(page) -> None:
    """Neither the page nor a table in it scrolls sideways at the window's width."""
    assert page.evaluate("document.documentElement.scrollWidth") <= VIEWPORT["width"]
    # A wide table scrolls inside its .table-responsive box instead of widening the page.
    overflowing = page.evaluate(
        """[...document.querySelectorAll('.table-responsive')]
            .filter(box => box.scrollWidth > box.clientWidth)
            .map(box => box.scrollWidth + ' > ' + box.clientWidth)"""
    )
    assert overflowing == []


def test_a_hundred_endpoints_keep_the_requests_list_and_the_queue_readable(portal, browser_of):
    acme = Organization.objects.get(slug="acme")
    operator = User.objects.get(username="operator")
    hostnames = [f"{LONG_LABEL.format(n=n)}.{LONG_LABEL.format(n=n)}.acme.test" for n in range(100)]
    addresses = [f"2001:db8:4242:ffff:{n:04x}:beef:cafe:{n:04x}" for n in range(100)]
    by_name = submit(acme, operator, endpoints=hostnames, summary="Worm on " + " ".join(hostnames))
    submit(acme, operator, endpoints=addresses, summary="Worm on " + " ".join(addresses))

    sign_in(portal, "operator")
    go(portal, "/orgs/acme/requests/")
    expect(portal.get_by_text("and 97 more")).to_have_count(2)
    assert_fits_the_window(portal)

    go(portal, f"/orgs/acme/requests/{by_name.uuid}/")
    expect(portal.get_by_role("row", name=re.compile(r"acme\.test"))).to_have_count(100)
    assert_fits_the_window(portal)

    admin = browser_of("acme-admin")
    go(admin, "/orgs/acme/queue/")
    expect(admin.get_by_text("and 97 more")).to_have_count(2)
    for summary in admin.locator("summary").all():
        summary.click()
    assert_fits_the_window(admin)

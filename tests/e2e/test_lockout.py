"""Brute-force protection, as a person at the sign-in page meets it."""

from playwright.sync_api import expect

from audit.models import AuditEvent

from .conftest import PASSWORD, go


def attempt(page, password: str) -> None:
    go(page, "/accounts/login/")
    page.get_by_label("Username").fill("acme-admin")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_five_wrong_passwords_lock_the_demo_admin_out(portal):
    for _ in range(4):
        attempt(portal, "not-the-password")
        expect(portal.get_by_text("Please enter a correct username and password")).to_be_visible()
    attempt(portal, "not-the-password")
    expect(portal.get_by_role("heading", name="Sign-in locked for now")).to_be_visible()
    attempt(portal, PASSWORD)
    expect(portal.get_by_text("Too many failed sign-ins")).to_be_visible()
    assert "/accounts/login/" in portal.url
    assert AuditEvent.objects.filter(verb="auth.locked_out").exists()

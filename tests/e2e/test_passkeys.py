"""Passkeys in Chromium, with the DevTools protocol's virtual authenticator standing in for a
security key: register one on the Security page, sign in with it, and confirm it (step-up)
before approving a request. The page's own script (static/accounts/passkeys.js) runs the
WebAuthn ceremonies; the portal checks them with py_webauthn."""

import pytest
from django.contrib.sessions.backends.db import SessionStore
from playwright.sync_api import expect

from accounts.models import Passkey
from accounts.stepup import SESSION_KEY
from approvals.models import ActionRequest, RequestStatus
from audit.models import AuditEvent
from responseportal.models import Membership, Role

from ..approvals_helpers import submit
from .conftest import go, sign_in

AUTHENTICATOR = {
    "protocol": "ctap2",
    "transport": "internal",
    "hasResidentKey": True,
    "hasUserVerification": True,
    "isUserVerified": True,
    "automaticPresenceSimulation": True,
}


@pytest.fixture
def authenticator(portal):
    """A virtual authenticator attached to the portal's page, as a built-in passkey would be."""
    session = portal.context.new_cdp_session(portal)
    session.send("WebAuthn.enable")
    found = session.send("WebAuthn.addVirtualAuthenticator", {"options": AUTHENTICATOR})
    yield session, found["authenticatorId"]
    session.send("WebAuthn.disable")


def credentials(authenticator) -> list[dict]:
    session, authenticator_id = authenticator
    return session.send("WebAuthn.getCredentials", {"authenticatorId": authenticator_id})[
        "credentials"
    ]


def register(page, name: str) -> None:
    go(page, "/accounts/security/")
    page.get_by_label("Name of the new passkey").fill(name)
    page.get_by_role("button", name="Add a passkey").click()
    expect(page.get_by_text(f"Passkey “{name}” added.")).to_be_visible()


def sign_out(page) -> None:
    page.context.clear_cookies()


def age_the_second_factor(page) -> None:
    """As if the last second factor was given longer ago than STEP_UP_MAX_AGE."""
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "sessionid"]
    store = SessionStore(session_key=cookie["value"])
    proof = store[SESSION_KEY]
    store[SESSION_KEY] = {**proof, "at": proof["at"] - 3600}
    store.save()


def test_a_passkey_is_registered_and_signs_in(portal, authenticator):
    sign_in(portal, "acme-admin")
    register(portal, "Work laptop")

    (passkey,) = Passkey.objects.filter(user__username="acme-admin")
    assert passkey.name == "Work laptop"
    assert len(credentials(authenticator)) == 1
    expect(portal.get_by_role("button", name="Remove Work laptop")).to_be_visible()
    assert AuditEvent.objects.filter(verb="second_factor.added", data__kind="webauthn").exists()

    sign_out(portal)
    sign_in(portal, "acme-admin")
    expect(portal.get_by_role("heading", name="Second factor")).to_be_visible()
    portal.get_by_role("button", name="Use a passkey").click()
    portal.wait_for_url(portal.base_url + "/orgs/acme/")
    expect(portal.get_by_role("button", name="acme-admin")).to_be_visible()
    passkey.refresh_from_db()
    assert passkey.last_used_at is not None
    assert AuditEvent.objects.filter(verb="auth.signed_in", actor=passkey.user).count() == 2


def test_approving_asks_for_the_passkey_and_then_approves(portal, authenticator):
    sign_in(portal, "acme-admin")
    register(portal, "Security key")
    acme = Membership.objects.get(user__username="acme-admin").organization
    operator = Membership.objects.get(organization=acme, role=Role.OPERATOR).user
    pending = submit(acme, operator)
    age_the_second_factor(portal)

    go(portal, f"/orgs/acme/requests/{pending.uuid}/")
    portal.get_by_label("Comment (optional)").fill("Contain it")
    portal.get_by_role("button", name="Approve").click()
    expect(portal.get_by_role("heading", name="Confirm it is you")).to_be_visible()
    assert ActionRequest.objects.get(pk=pending.pk).status == RequestStatus.PENDING

    portal.get_by_role("button", name="Confirm with a passkey").click()
    expect(portal.get_by_text("Approved: Isolate Endpoint.")).to_be_visible()

    pending.refresh_from_db()
    assert pending.status != RequestStatus.PENDING and pending.decided_by.username == "acme-admin"
    event = AuditEvent.objects.get(verb="request.approved", request=pending)
    assert event.data["second_factor"] == "webauthn"
    assert pending.approvals.get().comment == "Contain it"


def test_the_demo_admin_of_initech_signs_in_with_the_published_secret(portal):
    import pyotp

    sign_in(portal, "initech-admin")
    portal.get_by_label("Code").fill(pyotp.TOTP("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP").now())
    portal.get_by_role("button", name="Confirm").click()
    portal.wait_for_url(portal.base_url + "/orgs/initech/")

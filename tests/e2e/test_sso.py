"""Single sign-on in Chromium: from the portal's sign-in page to the organization's identity
provider (tests/oidc_provider, a real one on loopback) and back, signed in with the role the
provider's groups give."""

import pytest
from playwright.sync_api import expect

from audit.models import AuditEvent
from responseportal.models import Membership, Organization, Role
from sso.models import IdentityProvider
from sso.secrets import encrypt

from ..oidc_provider.harness import PASSWORD, start_provider
from .conftest import go

SECRET = "e2e-client-secret"


@pytest.fixture(scope="module")
def provider():
    started = start_provider()
    try:
        started.setup(users=[{"username": "alice", "email": "alice@acme.test", "groups": ["soc"]}])
        yield started
    finally:
        started.stop()


@pytest.fixture
def registered(portal, provider, settings):
    settings.SSO_ALLOW_PRIVATE_ISSUERS = True
    callback = f"{portal.base_url}/sso/acme/callback/"
    provider.setup(
        clients=[{"client_id": "portal-e2e", "client_secret": SECRET, "redirect_uris": [callback]}]
    )
    return IdentityProvider.objects.create(
        organization=Organization.objects.get(slug="acme"),
        issuer=provider.issuer,
        client_id="portal-e2e",
        client_secret_encrypted=encrypt(SECRET),
        allowed_domains=["acme.test"],
        role_mapping={"soc": Role.OPERATOR},
    )


def test_a_member_signs_in_through_the_identity_provider(portal, registered, provider):
    go(portal, "/accounts/login/")
    portal.get_by_label("Work e-mail address").fill("alice@acme.test")
    portal.get_by_role("button", name="Continue to your identity provider").click()
    # The provider's own sign-in page.
    expect(portal.get_by_role("heading", name="Test identity provider")).to_be_visible()
    assert portal.url.startswith(provider.issuer.removesuffix("/o") + "/login/")
    portal.get_by_label("Username").fill("alice")
    portal.get_by_label("Password").fill(PASSWORD)
    portal.get_by_role("button", name="Sign in to the provider").click()
    # Back in the portal, on the organization's dashboard, as an operator.
    portal.wait_for_url(f"{portal.base_url}/orgs/acme/")
    menu = portal.get_by_role("navigation", name="Main")
    expect(menu.get_by_role("link", name="New request")).to_be_visible()
    membership = Membership.objects.get(user__email="alice@acme.test")
    assert membership.role == Role.OPERATOR
    assert AuditEvent.objects.filter(verb="auth.signed_in", source="sso").exists()


def test_a_refusal_is_shown_in_words(portal, registered):
    go(portal, "/sso/")
    portal.get_by_label("Work e-mail address").fill("bob@elsewhere.test")
    portal.get_by_role("button", name="Continue to your identity provider").click()
    expect(
        portal.get_by_text("No organization signs in with an identity provider for elsewhere.test")
    ).to_be_visible()

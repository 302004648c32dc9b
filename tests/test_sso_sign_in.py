"""Single sign-on against a real OpenID Connect provider (tests/oidc_provider, started on
loopback): the portal's test client follows the real redirects, the provider's pages are
driven over HTTP, and the portal exchanges the code and fetches the keys over HTTP itself."""

from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from audit.models import AuditEvent
from responseportal.models import Membership, Role
from sso.models import ExternalIdentity, IdentityProvider
from sso.secrets import encrypt

from .factories import PASSWORD, MembershipFactory, UserFactory
from .oidc_provider.harness import sign_in_at_provider, start_provider

pytestmark = pytest.mark.django_db
User = get_user_model()
CALLBACK = "http://testserver/sso/acme/callback/"
SECRET = "portal-client-secret"
MAPPING = {"acme-admins": Role.ADMIN, "acme-operators": Role.OPERATOR, "acme-audit": Role.AUDITOR}


@pytest.fixture(scope="module")
def provider():
    started = start_provider()
    try:
        clients = [
            {"client_id": "portal"},
            # Misconfigured on the provider's side: each issues ID tokens that must be refused.
            {"client_id": "portal-other-audience", "audience": "some-other-client"},
            {"client_id": "portal-other-issuer", "issuer": "http://127.0.0.1:9/elsewhere"},
            {"client_id": "portal-slow-clock", "clock_offset_seconds": -3600},
        ]
        started.setup(
            users=[
                {"username": "alice", "email": "alice@acme.test", "groups": ["acme-operators"]},
                {"username": "carol", "email": "Carol@ACME.test", "groups": ["acme-admins"]},
                {"username": "dave", "email": "dave@acme.test", "groups": ["acme-audit"]},
                {
                    "username": "erin",
                    "email": "erin@acme.test",
                    "groups": ["acme-admins"],
                    "claims": {"amr": ["pwd", "mfa"]},
                },
                {"username": "mallory", "email": "mallory@evil.test", "groups": ["acme-admins"]},
            ],
            clients=[
                {**client, "client_secret": SECRET, "redirect_uris": [CALLBACK]}
                for client in clients
            ],
        )
        yield started
    finally:
        started.stop()


@pytest.fixture
def registration(acme, provider, settings):
    settings.SSO_ALLOW_PRIVATE_ISSUERS = True
    return IdentityProvider.objects.create(
        organization=acme,
        issuer=provider.issuer,
        client_id="portal",
        client_secret_encrypted=encrypt(SECRET),
        allowed_domains=["acme.test"],
        role_mapping={group: role.value for group, role in MAPPING.items()},
    )


def provider_redirect(client: Client, slug: str = "acme") -> str:
    start = client.get(f"/sso/{slug}/login/")
    assert start.status_code == 302, start.content[:500]
    return start["Location"]


def come_back(client: Client, url: str):
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == CALLBACK
    return client.get(f"{parts.path}?{parts.query}")


def sign_in(client: Client, username: str):
    return come_back(client, sign_in_at_provider(provider_redirect(client), username))


def signed_in_user(client: Client):
    return User.objects.filter(pk=client.session.get("_auth_user_id")).first()


def test_the_redirect_carries_pkce_state_and_nonce(registration):
    query = parse_qs(urlsplit(provider_redirect(Client())).query)
    assert query["response_type"] == ["code"]
    assert query["client_id"] == ["portal"]
    assert query["redirect_uri"] == [CALLBACK]
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) == 43  # base64url of a SHA-256 digest
    assert len(query["state"][0]) >= 20 and len(query["nonce"][0]) >= 20
    assert "openid" in query["scope"][0].split()


def test_first_sign_in_creates_the_user_with_the_role_of_their_group(registration, provider):
    provider.set_groups("alice", ["acme-operators"])
    client = Client()
    answer = sign_in(client, "alice")
    assert answer.status_code == 302 and answer["Location"] == "/"
    user = signed_in_user(client)
    assert user.email == "alice@acme.test" and not user.has_usable_password()
    identity = ExternalIdentity.objects.get(user=user)
    assert identity.issuer == provider.issuer and identity.subject  # the provider's `sub`
    membership = Membership.objects.get(user=user)
    assert (membership.organization.slug, membership.role) == ("acme", Role.OPERATOR)
    # Its dashboard opens: the session is a real one.
    assert client.get("/orgs/acme/").status_code == 200
    signed_in = AuditEvent.objects.get(verb="auth.signed_in", actor=user)
    assert signed_in.source == "sso"
    created = AuditEvent.objects.get(verb="membership.created")
    assert created.data["role"] == {"before": None, "after": "operator"}
    assert created.organization.slug == "acme"


def test_the_strongest_mapped_role_wins_and_the_domain_is_compared_in_lower_case(
    registration, provider
):
    provider.set_groups("carol", ["acme-audit", "acme-admins", "unmapped"])
    client = Client()
    assert sign_in(client, "carol").status_code == 302
    user = signed_in_user(client)
    assert user.email == "Carol@acme.test"
    assert Membership.objects.get(user=user).role == Role.ADMIN


def test_the_role_follows_the_group_and_the_membership_goes_with_it(registration, provider):
    provider.set_groups("dave", ["acme-audit"])
    assert sign_in(Client(), "dave").status_code == 302
    user = ExternalIdentity.objects.get(email="dave@acme.test").user
    assert Membership.objects.get(user=user).role == Role.AUDITOR

    provider.set_groups("dave", ["acme-operators"])
    assert sign_in(Client(), "dave").status_code == 302
    assert Membership.objects.get(user=user).role == Role.OPERATOR
    changed = AuditEvent.objects.get(verb="membership.changed")
    assert changed.data["role"] == {"before": "auditor", "after": "operator"}

    provider.set_groups("dave", [])
    client = Client()
    refused = sign_in(client, "dave")
    assert refused.status_code == 403
    assert "gives you no role in Acme Corporation" in refused.content.decode()
    assert signed_in_user(client) is None
    assert not Membership.objects.filter(user=user).exists()
    removed = AuditEvent.objects.get(verb="membership.removed")
    assert removed.data["role"] == {"before": "operator", "after": None}
    provider.set_groups("dave", ["acme-audit"])


def test_the_user_is_found_by_subject_never_by_e_mail(registration, provider, acme):
    provider.set_groups("alice", ["acme-operators"])
    local = UserFactory(username="alice-local", email="alice@acme.test")
    MembershipFactory(user=local, organization=acme, role=Role.ADMIN)
    client = Client()
    sign_in(client, "alice")
    user = signed_in_user(client)
    assert user != local and user.username == "alice@acme.test"
    assert Membership.objects.get(user=local).role == Role.ADMIN  # untouched
    # The second sign-in finds the same user again.
    again = Client()
    sign_in(again, "alice")
    assert signed_in_user(again) == user


def test_an_e_mail_domain_not_allowed_is_refused(registration):
    client = Client()
    refused = sign_in(client, "mallory")
    assert refused.status_code == 403
    assert "allows sign-in only for addresses at acme.test" in refused.content.decode()
    assert signed_in_user(client) is None
    assert not ExternalIdentity.objects.exists()
    assert not User.objects.filter(email="mallory@evil.test").exists()
    failed = AuditEvent.objects.get(verb="auth.sign_in_failed")
    assert failed.source == "sso" and failed.actor_username == "mallory@evil.test"


@pytest.mark.parametrize(
    ("client_id", "reason"),
    [
        ("portal-other-audience", "issued for another client (audience)"),
        ("portal-other-issuer", "issued by another issuer than the one registered"),
        ("portal-slow-clock", "it has expired"),
    ],
)
def test_an_id_token_the_portal_must_not_trust_is_refused(registration, client_id, reason):
    registration.client_id = client_id
    registration.save()
    client = Client()
    refused = sign_in(client, "alice")
    assert refused.status_code == 403
    assert reason in refused.content.decode()
    assert signed_in_user(client) is None
    assert not ExternalIdentity.objects.exists()
    assert not AuditEvent.objects.filter(verb="auth.signed_in").exists()


def test_a_callback_from_another_browser_is_refused_by_its_state(registration):
    started_here = Client()
    back = sign_in_at_provider(provider_redirect(started_here), "alice")
    elsewhere = Client()
    provider_redirect(elsewhere)  # a sign-in of its own, with another state
    refused = come_back(elsewhere, back)
    assert refused.status_code == 403
    assert "its state does not match" in refused.content.decode()
    assert signed_in_user(elsewhere) is None


def test_a_callback_used_twice_is_refused_the_second_time(registration):
    client = Client()
    back = sign_in_at_provider(provider_redirect(client), "alice")
    assert come_back(client, back).status_code == 302
    client.logout()
    again = come_back(client, back)
    assert again.status_code == 403
    assert signed_in_user(client) is None


def test_a_token_issued_for_another_nonce_is_refused(registration):
    client = Client()
    parts = urlsplit(provider_redirect(client))
    query = parse_qs(parts.query)
    query["nonce"] = ["a-nonce-the-portal-never-sent"]
    tampered = urlunsplit(parts._replace(query=urlencode(query, doseq=True)))
    refused = come_back(client, sign_in_at_provider(tampered, "alice"))
    assert refused.status_code == 403
    assert "nonce does not match" in refused.content.decode()
    assert signed_in_user(client) is None


def test_a_wrong_client_secret_is_refused_by_the_provider(registration):
    registration.client_secret_encrypted = encrypt("not-the-secret")
    registration.save()
    client = Client()
    refused = sign_in(client, "alice")
    assert refused.status_code == 403
    assert "refused the sign-in (invalid_client" in refused.content.decode()
    assert signed_in_user(client) is None


def test_a_discovery_document_naming_another_issuer_is_refused(registration, provider):
    registration.issuer = provider.issuer.replace("127.0.0.1", "localhost")
    registration.save()
    refused = Client().get("/sso/acme/login/")
    assert refused.status_code == 403
    assert "discovery document names the issuer" in refused.content.decode()


def test_next_is_followed_only_within_the_portal(registration):
    client = Client()
    start = client.get("/sso/acme/login/?next=/orgs/acme/requests/")
    assert (
        come_back(client, sign_in_at_provider(start["Location"], "alice"))["Location"]
        == "/orgs/acme/requests/"
    )
    client = Client()
    start = client.get("/sso/acme/login/?next=https://evil.test/")
    assert come_back(client, sign_in_at_provider(start["Location"], "alice"))["Location"] == "/"


def test_a_multi_factor_sign_in_counts_as_a_second_factor_when_the_organization_says_so(
    registration,
):
    client = Client()
    sign_in(client, "erin")
    assert "second_factor" not in client.session  # the organization did not choose it
    registration.amr_satisfies_step_up = True
    registration.save()
    client = Client()
    sign_in(client, "erin")
    assert client.session["second_factor"]["kind"] == "idp"
    # A password-only sign-in at the provider proves nothing more.
    client = Client()
    sign_in(client, "alice")
    assert "second_factor" not in client.session


def test_password_sign_in_is_refused_for_an_organization_that_switched_it_off(
    registration, operator, globex
):
    registration.password_sign_in_disabled = True
    registration.save()
    client = Client()
    answer = client.post("/accounts/login/", {"username": "operator", "password": PASSWORD})
    assert answer.status_code == 200
    assert "Acme Corporation signs in only through its identity provider" in answer.content.decode()
    assert signed_in_user(client) is None
    refused = AuditEvent.objects.get(verb="auth.sign_in_failed")
    assert refused.organization.slug == "acme" and refused.actor_username == "operator"
    assert refused.data["reason"] == "password sign-in is switched off"
    # A wrong password still says only that it is wrong.
    answer = client.post("/accounts/login/", {"username": "operator", "password": "wrong"})
    assert "identity provider" not in answer.context["form"].errors.as_text()
    # A member of another organization only, and a platform admin, keep their passwords.
    UserFactory(username="globex-user")
    MembershipFactory(user=User.objects.get(username="globex-user"), organization=globex)
    assert (
        Client()
        .post("/accounts/login/", {"username": "globex-user", "password": PASSWORD})
        .status_code
        == 302
    )
    operator.is_superuser = True
    operator.save()
    assert (
        Client()
        .post("/accounts/login/", {"username": "operator", "password": PASSWORD})
        .status_code
        == 302
    )


def test_the_e_mail_form_on_the_sign_in_page_leads_to_the_provider(registration, provider):
    client = Client()
    page = client.get("/accounts/login/")
    assert "Sign in with your organization's identity provider" in page.content.decode()
    answer = client.post("/sso/", {"email": "alice@ACME.test", "next": "/orgs/acme/"})
    # A page that moves on by itself: the sign-in form may not redirect to another site.
    assert answer.status_code == 200
    onward = "/sso/acme/login/?login_hint=alice%40acme.test&next=%2Forgs%2Facme%2F"
    assert f'content="0;url={onward.replace("&", "&amp;")}"' in answer.content.decode()
    start = client.get(onward)
    assert start["Location"].startswith(provider.issuer + "/authorize/")
    assert parse_qs(urlsplit(start["Location"]).query)["login_hint"] == ["alice@acme.test"]


def test_starting_over_and_over_keeps_five_sign_ins_under_way(registration):
    client = Client()
    redirects = [provider_redirect(client) for _ in range(12)]
    started = [key for key in list(client.session.keys()) if key.startswith("_state_")]
    assert len(started) == 5
    # The newest still completes; the oldest is forgotten.
    assert come_back(client, sign_in_at_provider(redirects[-1], "alice")).status_code == 302
    client.logout()
    assert come_back(Client(), sign_in_at_provider(redirects[0], "alice")).status_code == 403

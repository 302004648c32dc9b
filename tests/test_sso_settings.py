"""The single sign-on settings page of an organization, the Django admin's registration, the
e-mail form that picks a provider, and what is stored (the client secret encrypted)."""

import pytest
from django.test import Client, override_settings
from django.urls import reverse

from audit.models import AuditEvent
from responseportal.models import Role
from sso import secrets
from sso.models import ExternalIdentity, IdentityProvider
from sso.secrets import encrypt

from .conftest import client_for
from .factories import UserFactory
from .two_factor_helpers import code, give_totp, signed_in

pytestmark = pytest.mark.django_db
URL = "/orgs/acme/settings/sso/"
ISSUER = "https://login.acme.test/realms/acme"


def form_data(**changes) -> dict:
    data = {
        "issuer": ISSUER,
        "client_id": "response-portal",
        "client_secret": "s3cret-from-the-provider",
        "allowed_domains": "acme.test\nACME-corp.test.",
        "groups_claim": "groups",
        "role_mapping": "portal-admins = admin\nsoc = Operator\nauditors=auditor",
        "version": "",
    }
    data.update(changes)
    return {name: value for name, value in data.items() if value is not None}


def test_the_page_is_for_the_organization_s_admins(cast):
    assert client_for(cast["admin"]).get(URL).status_code == 200
    assert client_for(cast["operator"]).get(URL).status_code == 403
    assert client_for(cast["auditor"]).post(URL, form_data()).status_code == 403
    assert client_for(cast["outsider"]).get(URL).status_code == 404
    assert client_for(cast["outsider"]).post(URL, form_data()).status_code == 404
    assert Client().get(URL)["Location"].startswith(reverse("login"))
    assert not IdentityProvider.objects.exists()


def test_an_admin_registers_the_provider_and_the_change_is_audited(admin, acme):
    client = client_for(admin)
    page = client.get(URL).content.decode()
    assert "http://testserver/sso/acme/callback/" in page  # what to register at the provider
    answer = client.post(URL, form_data())
    assert answer.status_code == 302
    provider = IdentityProvider.objects.get(organization=acme)
    assert provider.issuer == ISSUER and provider.client_id == "response-portal"
    assert provider.allowed_domains == ["acme.test", "acme-corp.test"]
    assert provider.role_mapping == {
        "portal-admins": "admin",
        "soc": "operator",
        "auditors": "auditor",
    }
    # Encrypted at rest, readable with the key, never shown back.
    assert "s3cret-from-the-provider" not in provider.client_secret_encrypted
    assert secrets.decrypt(provider.client_secret_encrypted) == "s3cret-from-the-provider"
    assert "s3cret-from-the-provider" not in client.get(URL).content.decode()
    event = AuditEvent.objects.get(verb="settings.changed")
    assert event.actor == admin and event.role == Role.ADMIN
    assert event.data["issuer"] == {"before": None, "after": ISSUER}
    assert event.data["client_secret"] == {"before": None, "after": "(set)"}
    assert "s3cret" not in str(event.data)


def test_an_empty_secret_keeps_the_saved_one_and_nothing_changed_writes_no_event(admin, acme):
    client = client_for(admin)
    client.post(URL, form_data())
    provider = IdentityProvider.objects.get()
    stored = provider.client_secret_encrypted
    client.post(URL, form_data(client_secret="", version=provider.updated_at.isoformat()))
    provider.refresh_from_db()
    assert provider.client_secret_encrypted == stored
    assert AuditEvent.objects.filter(verb="settings.changed").count() == 1
    client.post(
        URL,
        form_data(
            client_secret="",
            role_mapping="portal-admins = admin",
            version=provider.updated_at.isoformat(),
        ),
    )
    event = AuditEvent.objects.filter(verb="settings.changed").latest("sequence")
    assert set(event.data) == {"settings", "role_mapping"}


def test_a_new_registration_needs_the_secret(admin):
    answer = client_for(admin).post(URL, form_data(client_secret=""))
    assert "Enter the client secret" in answer.content.decode()
    assert not IdentityProvider.objects.exists()


def test_a_save_over_a_newer_one_is_refused(admin):
    client = client_for(admin)
    client.post(URL, form_data())
    answer = client.post(URL, form_data(client_id="stale-page", version=""))
    assert "Someone changed the single sign-on settings" in answer.content.decode()
    assert IdentityProvider.objects.get().client_id == "response-portal"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("issuer", "login.acme.test", "is not an issuer URL"),
        ("issuer", "http://login.acme.test/realms/acme", "is not an https address"),
        ("issuer", "https://127.0.0.1/realms", "inside the portal"),
        ("issuer", "https://[::ffff:10.0.0.1]/realms", "inside the portal"),
        ("issuer", "https://login.acme.test/?x=1", "no query"),
        ("issuer", "https://login.acme.test/\u200brealms", "invisible character (U+200B)"),
        ("client_id", "portal\x00", "Null characters are not allowed"),
        ("client_secret", "a" * 1001, "at most 1000 characters"),
        ("allowed_domains", "acme.test\nnot a domain", "`not a domain` is not a domain name"),
        ("allowed_domains", "acme", "`acme` is not a domain name"),
        ("allowed_domains", "acme\u00adcorp.test", "invisible character (U+00AD)"),
        ("allowed_domains", "\n".join(f"d{n}.test" for n in range(51)), "at most 50"),
        ("role_mapping", "soc = superuser", "the role one of operator, admin, auditor"),
        ("role_mapping", "soc", "expected `group = role`"),
        ("role_mapping", "soc = admin\nsoc = operator", "group `soc` is mapped twice"),
        ("role_mapping", "   ", "This field is required"),
        ("groups_claim", "x" * 101, "at most 100 characters"),
        ("role_mapping", "g" * 201 + " = admin", "a group name of 201 characters"),
        ("role_mapping", "g = admin\n" * 3000, "at most 20000 characters"),
    ],
)
@override_settings(SSO_ALLOW_PRIVATE_ISSUERS=False, NOTIFY_WEBHOOK_ALLOW_PRIVATE=False)
def test_bad_input_is_named_and_changes_nothing(admin, field, value, message):
    answer = client_for(admin).post(URL, form_data(**{field: value}))
    assert answer.status_code == 200
    assert message in answer.content.decode().replace("&#x27;", "'").replace("&quot;", '"')
    assert not IdentityProvider.objects.exists()
    assert not AuditEvent.objects.filter(verb="settings.changed").exists()


def test_an_international_domain_is_stored_as_its_ascii_name(admin):
    client_for(admin).post(URL, form_data(allowed_domains="bücher.test"))
    assert IdentityProvider.objects.get().allowed_domains == ["xn--bcher-kva.test"]


def test_an_admin_cannot_switch_passwords_off_before_signing_in_through_the_provider(admin):
    client = client_for(admin)
    answer = client.post(URL, form_data(password_sign_in_disabled="on"))
    assert "Sign in once through this identity provider" in answer.content.decode()
    assert not IdentityProvider.objects.exists()
    ExternalIdentity.objects.create(user=admin, issuer=ISSUER, subject="admin-at-idp")
    assert client.post(URL, form_data(password_sign_in_disabled="on")).status_code == 302
    assert IdentityProvider.objects.get().password_sign_in_disabled


def test_a_platform_admin_registers_a_provider_in_the_django_admin(acme):
    platform = UserFactory(username="platform", is_staff=True, is_superuser=True)
    client = client_for(platform)
    answer = client.post(
        reverse("admin:sso_identityprovider_add"),
        {**form_data(), "organization": acme.pk, "password_sign_in_disabled": "on"},
    )
    assert answer.status_code == 302, answer.content.decode()[:2000]
    provider = IdentityProvider.objects.get(organization=acme)
    assert provider.password_sign_in_disabled
    assert secrets.decrypt(provider.client_secret_encrypted) == "s3cret-from-the-provider"
    event = AuditEvent.objects.get(verb="settings.changed")
    assert event.actor == platform and event.role == "platform admin"
    change = reverse("admin:sso_identityprovider_change", args=[provider.pk])
    assert "s3cret-from-the-provider" not in client.get(change).content.decode()
    client.post(reverse("admin:sso_identityprovider_delete", args=[provider.pk]), {"post": "yes"})
    assert not IdentityProvider.objects.exists()
    removed = AuditEvent.objects.filter(verb="settings.changed").latest("sequence")
    assert removed.data["issuer"] == {"before": ISSUER, "after": None}


def test_a_secret_saved_under_another_secret_key_asks_to_be_entered_again(settings):
    token = encrypt("old")
    settings.SECRET_KEY = "a-new-secret-key-after-rotation"
    with pytest.raises(secrets.UnreadableSecret):
        secrets.decrypt(token)
    settings.SECRET_KEY_FALLBACKS = ["insecure-key-for-tests-only"]
    assert secrets.decrypt(token) == "old"


def test_the_e_mail_form_names_a_domain_no_organization_signs_in_with(acme):
    answer = Client().post("/sso/", {"email": "someone@nowhere.test"})
    assert answer.status_code == 200
    assert "No organization signs in with an identity provider for nowhere.test" in (
        answer.content.decode()
    )
    for hostile in ["a\x00@acme.test", "a@acme\u200b.test", "a" * 300 + "@acme.test"]:
        answer = Client().post("/sso/", {"email": hostile})
        assert answer.status_code == 200 and b"is-invalid" in answer.content


def test_the_e_mail_form_offers_each_organization_that_allows_the_domain(acme, globex):
    for organization in (acme, globex):
        IdentityProvider.objects.create(
            organization=organization,
            issuer=ISSUER,
            client_id=organization.slug,
            client_secret_encrypted=encrypt("x"),
            allowed_domains=["shared.test"],
            role_mapping={"g": "operator"},
        )
    answer = Client().post("/sso/", {"email": "kim@shared.test"})
    page = answer.content.decode()
    assert "/sso/acme/login/?login_hint=kim%40shared.test" in page
    assert "/sso/globex/login/?login_hint=kim%40shared.test" in page


def test_an_unknown_organization_has_no_sign_in_address():
    assert Client().get("/sso/nobody/login/").status_code == 404
    assert Client().get("/sso/nobody/callback/?code=x&state=y").status_code == 404


def test_admins_find_the_page_in_their_menu(cast):
    assert URL in client_for(cast["admin"]).get("/orgs/acme/").content.decode()
    assert URL not in client_for(cast["operator"]).get("/orgs/acme/").content.decode()


def test_the_e_mail_form_has_a_page_of_its_own():
    page = Client().get("/sso/?next=/orgs/acme/").content.decode()
    assert 'name="email"' in page and 'value="/orgs/acme/"' in page


def test_an_admin_with_a_second_factor_confirms_it_before_saving(admin, settings):
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    give_totp(admin)
    client = signed_in(admin)
    asked = client.post(URL, form_data())
    assert asked.status_code == 403 and 'name="step_up_code"' in asked.content.decode()
    assert not IdentityProvider.objects.exists()
    data = {**form_data(), "step_up_code": code()}
    assert client.post(URL, data).status_code == 302
    assert IdentityProvider.objects.exists()
    assert AuditEvent.objects.get(verb="settings.changed").data["second_factor"] == "totp"


@override_settings(SSO_ALLOW_PRIVATE_ISSUERS=False, NOTIFY_WEBHOOK_ALLOW_PRIVATE=False)
def test_a_provider_inside_the_portal_s_network_is_never_called(acme):
    # Saved before the rule (or behind the form's back): sign-in still refuses to call it.
    IdentityProvider.objects.create(
        organization=acme,
        issuer="http://127.0.0.1:9/realms/acme",
        client_id="portal",
        client_secret_encrypted=encrypt("x"),
        allowed_domains=["acme.test"],
        role_mapping={"g": "operator"},
    )
    answer = Client().get("/sso/acme/login/")
    assert answer.status_code == 403
    assert "is not an https address" in answer.content.decode()

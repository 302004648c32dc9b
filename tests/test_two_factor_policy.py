"""An organization's two-factor policy: who must have a second factor, held on its pages only;
admins change it (audited); the demo's initech; a platform admin's reset of a user's factors."""

from io import StringIO

import pyotp
import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import Passkey
from approvals.models import ActionRequest
from audit.models import AuditEvent
from responseportal.models import Organization, Role

from .conftest import client_for
from .factories import MembershipFactory, OrganizationFactory, UserFactory
from .two_factor_helpers import (
    code,
    give_totp,
    send_code,
    sign_in_with_password,
    signed_in,
    signed_in_with_totp,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def initech(db):
    return OrganizationFactory(slug="initech", name="Initech", second_factor_policy="everyone")


@pytest.fixture
def member_of_both(acme, initech):
    user = UserFactory(username="both")
    MembershipFactory(user=user, organization=acme, role=Role.OPERATOR)
    MembershipFactory(user=user, organization=initech, role=Role.OPERATOR)
    return user


def policy_url(slug="acme") -> str:
    return reverse("second_factor_policy", args=[slug])


def test_a_new_organization_requires_a_second_factor_of_its_admins(db):
    organization = Organization.objects.create(slug="newco", name="NewCo")
    assert organization.second_factor_policy == "admins"
    assert organization.requires_second_factor(Role.ADMIN)
    assert not organization.requires_second_factor(Role.OPERATOR)


# Enforcement


@pytest.mark.parametrize(
    "path",
    [
        "/orgs/initech/",
        "/orgs/initech/requests/",
        "/orgs/initech/requests/new/isolate_endpoint/",
        "/orgs/initech/settings/approval/",
        "/orgs/initech/api-tokens/",
    ],
)
def test_a_member_without_a_factor_is_sent_to_set_one_up(member_of_both, path):
    response = signed_in(member_of_both).get(path)
    assert response.status_code == 302
    assert response.url == reverse("security")


def test_posts_are_sent_away_too_and_change_nothing(member_of_both, initech):
    response = signed_in(member_of_both).post(
        "/orgs/initech/requests/new/isolate_endpoint/",
        {"endpoints": "web-01", "description": "x"},
    )
    assert response.url == reverse("security")
    assert not ActionRequest.objects.filter(organization=initech).exists()


def test_the_other_organizations_keep_working(member_of_both):
    client = signed_in(member_of_both)
    assert client.get("/orgs/acme/").status_code == 200
    assert client.get(reverse("catalog")).status_code == 200
    assert client.get(reverse("org_list")).status_code == 200


def test_the_security_page_says_which_organization_requires_it(member_of_both):
    page = signed_in(member_of_both).get(reverse("security")).content.decode()
    assert "Initech requires a second factor of you" in page


def test_signing_in_warns_of_the_requirement(member_of_both):
    client = Client()
    response = sign_in_with_password(client, member_of_both)
    assert response.status_code == 302
    page = client.get(reverse("org_list")).content.decode()
    assert "Initech requires a second factor" in page


def test_once_set_up_the_organization_opens(member_of_both):
    client = signed_in(member_of_both)
    secret = client.get(reverse("totp_setup")).context["secret"]
    client.post(reverse("totp_setup"), {"code": pyotp.TOTP(secret).now()})
    assert client.get("/orgs/initech/").status_code == 200


def test_a_policy_for_admins_leaves_operators_alone(acme, operator, admin):
    acme.second_factor_policy = "admins"
    acme.save()
    assert signed_in(operator).get("/orgs/acme/").status_code == 200
    assert signed_in(admin).get("/orgs/acme/").url == reverse("security")


def test_outsiders_still_get_404(initech, outsider):
    assert signed_in(outsider).get("/orgs/initech/").status_code == 404


# Changing the policy


def test_an_admin_with_a_factor_changes_it_and_it_is_audited(admin, acme):
    give_totp(admin)
    client = signed_in_with_totp(admin)
    assert client.get(policy_url()).status_code == 200

    response = client.post(policy_url(), {"second_factor_policy": "everyone"})

    assert response.status_code == 302
    acme.refresh_from_db()
    assert acme.second_factor_policy == "everyone"
    event = AuditEvent.objects.get(verb="organization.second_factor_policy_changed")
    assert (event.organization, event.actor, event.role) == (acme, admin, "admin")
    assert event.data == {"before": "none", "after": "everyone", "second_factor": "totp"}


def test_an_admin_without_a_factor_cannot_require_one_of_themselves(admin, acme):
    response = signed_in(admin).post(policy_url(), {"second_factor_policy": "admins"})
    assert response.status_code == 400
    assert "you have none" in response.content.decode()
    acme.refresh_from_db()
    assert acme.second_factor_policy == "none"
    assert not AuditEvent.objects.filter(verb="organization.second_factor_policy_changed").exists()


@pytest.mark.parametrize("value", ["ADMINS", "admins\x00", "all", "", "everyone " * 1000])
def test_other_values_are_refused(admin, acme, value):
    give_totp(admin)
    response = signed_in_with_totp(admin).post(policy_url(), {"second_factor_policy": value})
    assert response.status_code == 400
    acme.refresh_from_db()
    assert acme.second_factor_policy == "none"


@pytest.mark.parametrize("who,expected", [("operator", 403), ("auditor", 403), ("outsider", 404)])
def test_only_its_admins_see_or_change_it(cast, acme, who, expected):
    client = client_for(cast[who])
    assert client.get(policy_url()).status_code == expected
    assert client.post(policy_url(), {"second_factor_policy": "none"}).status_code == expected


def test_the_user_menu_links_admins_to_the_policy(admin, acme):
    page = signed_in(admin).get("/orgs/acme/").content.decode()
    assert f'href="{policy_url()}"' in page


# The demo


def test_the_demo_has_initech_requiring_a_factor_with_its_admins_published_secret():
    out = StringIO()
    call_command("seed_demo", force=True, stdout=out)
    initech = Organization.objects.get(slug="initech")
    assert initech.second_factor_policy == "everyone"
    assert set(
        Organization.objects.filter(slug__in=["acme", "globex"]).values_list(
            "second_factor_policy", flat=True
        )
    ) == {"none"}
    assert "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP" in out.getvalue()
    client = Client()
    admin = get_user_model().objects.get(username="initech-admin")
    client.post(reverse("login"), {"username": "initech-admin", "password": "demo-password"})
    assert client.session.get("_auth_user_id") is None
    assert (
        send_code(client, pyotp.TOTP("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP").now()).status_code == 302
    )
    assert client.session["_auth_user_id"] == str(admin.pk)
    assert client.get("/orgs/initech/").status_code == 200


def test_the_demo_operator_still_sees_the_catalog():
    call_command("seed_demo", force=True, stdout=StringIO())
    client = Client()
    client.post(reverse("login"), {"username": "operator", "password": "demo-password"})
    assert client.get(reverse("catalog")).status_code == 200
    assert client.get("/orgs/acme/").status_code == 200
    assert client.get("/orgs/initech/").url == reverse("security")


# A platform admin's reset


def test_reset_removes_every_factor_and_is_audited_and_mailed(
    operator, acme, django_capture_on_commit_callbacks
):
    give_totp(operator)
    StaticDevice.objects.create(user=operator, name="Recovery codes")
    Passkey.objects.create(user=operator, name="Key", credential_id="abc", public_key=b"k")
    out = StringIO()

    with django_capture_on_commit_callbacks(execute=True):
        call_command(
            "reset_second_factors",
            "operator",
            reason="Ticket 42: lost phone, identity checked by video call",
            by="Pat Platform",
            stdout=out,
        )

    assert not TOTPDevice.objects.filter(user=operator).exists()
    assert not Passkey.objects.filter(user=operator).exists()
    assert not StaticDevice.objects.filter(user=operator).exists()
    event = AuditEvent.objects.get(verb="second_factor.reset")
    assert event.organization == acme
    assert event.actor is None
    assert event.data == {
        "user": "operator",
        "removed": ["totp", "webauthn", "recovery"],
        "reason": "Ticket 42: lost phone, identity checked by video call",
        "by": "Pat Platform",
    }
    assert [m.to for m in mail.outbox] == [["operator@example.com"]]
    assert "totp, webauthn, recovery" in out.getvalue()
    # The user signs in with the password alone, and sets up a new factor.
    client = Client()
    sign_in_with_password(client, operator)
    assert client.session["_auth_user_id"] == str(operator.pk)


@pytest.mark.parametrize(
    "args,message",
    [
        (["operator", "--by", "Pat"], "--reason"),
        (["operator", "--reason", "   ", "--by", "Pat"], "reason"),
        (["operator", "--reason", "lost\x00", "--by", "Pat"], "reason"),
        (["operator", "--reason", "lost", "--by", ""], "--by"),
        (["nobody", "--reason", "lost", "--by", "Pat"], "no user"),
    ],
)
def test_reset_refuses_without_a_reason_or_a_user(operator, args, message):
    give_totp(operator)
    with pytest.raises(CommandError, match=message):
        call_command("reset_second_factors", *args)
    assert TOTPDevice.objects.filter(user=operator).exists()
    assert not AuditEvent.objects.filter(verb="second_factor.reset").exists()


def test_a_code_still_signs_in_before_any_reset(operator):
    give_totp(operator)
    client = Client()
    sign_in_with_password(client, operator)
    assert send_code(client, code()).status_code == 302

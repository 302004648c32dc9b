"""Single sign-on's rules without HTTP: the role the groups give, the claims the portal
accepts, and first sign-ins of one user at once (PostgreSQL)."""

import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from audit.context import SYSTEM
from audit.models import AuditEvent
from responseportal.models import Membership, Role
from sso import oidc, services
from sso.models import ExternalIdentity, IdentityProvider
from sso.secrets import encrypt

User = get_user_model()


def provider_for(organization, **fields) -> IdentityProvider:
    return IdentityProvider.objects.create(
        organization=organization,
        issuer="https://login.acme.test",
        client_id="portal",
        client_secret_encrypted=encrypt("x"),
        allowed_domains=["acme.test"],
        role_mapping={"a": "admin", "o": "operator", "u": "auditor"},
        **fields,
    )


@pytest.mark.parametrize(
    ("groups", "role"),
    [
        (["u", "o"], "operator"),
        (["o", "a", "u"], "admin"),
        (["u"], "auditor"),
        (["A", "admin", "x"], None),  # group names are compared exactly
        ([], None),
    ],
)
def test_the_strongest_mapped_role(groups, role):
    provider = IdentityProvider(role_mapping={"a": "admin", "o": "operator", "u": "auditor"})
    assert provider.role_for(groups) == role


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"email": "Kim@Acme.TEST"}, "Kim@acme.test"),
        ({"email": "kim@bücher.test"}, "kim@xn--bcher-kva.test"),
        ({"email": "kim@acme.test", "email_verified": True}, "kim@acme.test"),
    ],
)
def test_the_e_mail_address_the_domain_check_sees(claims, expected):
    assert oidc._email(claims) == expected


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"email": "kim@acme.test", "email_verified": False}, "has not verified"),
        ({}, "no usable e-mail address"),
        ({"email": ["kim@acme.test"]}, "no usable e-mail address"),
        ({"email": "kim@acme.test\x00"}, "no usable e-mail address"),
        ({"email": "not an address"}, "no usable e-mail address"),
    ],
)
def test_an_unusable_e_mail_claim_is_refused(claims, message):
    with pytest.raises(services.SignInRefused, match=message):
        oidc._email(claims)


def test_groups_are_read_from_a_list_or_a_single_name_and_nothing_else():
    assert oidc._groups({"groups": ["a", 3, None, "o"]}, "groups") == ["a", "o"]
    assert oidc._groups({"roles": "a"}, "roles") == ["a"]
    assert oidc._groups({"groups": {"a": 1}}, "groups") == []
    assert oidc._groups({}, "groups") == []


@pytest.mark.parametrize(
    ("amr", "methods"),
    [
        (["pwd", "mfa"], "mfa"),
        (["hwk", "otp", "pwd"], "hwk,otp"),
        (["pwd"], ""),
        (["sms"], ""),
        ("mfa", ""),  # not a list: not what the specification allows
        (None, ""),
    ],
)
def test_which_amr_values_count_as_a_second_factor(amr, methods):
    assert oidc.multi_factor({"amr": amr} if amr is not None else {}) == methods


@pytest.mark.django_db
def test_a_user_s_e_mail_follows_the_provider_and_a_disabled_user_is_refused(acme):
    provider = provider_for(acme)
    claims = services.Claims(subject="s-1", email="kim@acme.test", groups=["o"])
    user = services.sign_in(provider, claims, context=SYSTEM)
    changed = services.Claims(subject="s-1", email="kim.k@acme.test", groups=["o"])
    assert services.sign_in(provider, changed, context=SYSTEM) == user
    user.refresh_from_db()
    assert user.email == "kim.k@acme.test"
    user.is_active = False
    user.save()
    with pytest.raises(services.SignInRefused, match="disabled"):
        services.sign_in(provider, changed, context=SYSTEM)


@pytest.mark.django_db
def test_a_second_user_with_a_taken_name_gets_a_numbered_one(acme):
    provider = provider_for(acme)
    first = services.sign_in(
        provider, services.Claims("s-1", "kim@acme.test", ["o"]), context=SYSTEM
    )
    second = services.sign_in(
        provider, services.Claims("s-2", "kim@acme.test", ["o"]), context=SYSTEM
    )
    assert (first.username, second.username) == ("kim@acme.test", "kim@acme.test-2")


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_first_sign_ins_of_one_user_at_once_make_one_user(requires_postgresql, acme):
    provider = provider_for(acme)
    claims = services.Claims(subject="same", email="kim@acme.test", groups=["o"])
    start = threading.Barrier(8)
    users, errors = [], []

    def sign_in() -> None:
        try:
            start.wait()
            users.append(services.sign_in(provider, claims, context=SYSTEM).pk)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=sign_in) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert len(users) == 8 and len(set(users)) == 1
    assert ExternalIdentity.objects.count() == 1
    assert User.objects.filter(email="kim@acme.test").count() == 1
    assert Membership.objects.get(user_id=users[0]).role == Role.OPERATOR
    assert AuditEvent.objects.filter(verb="membership.created").count() == 1

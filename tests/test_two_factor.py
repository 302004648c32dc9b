"""Two-factor sign-in: an authenticator app set up from the shown secret, the code step after
the password, recovery codes, and the lockout that counts wrong codes like wrong passwords."""

import re

import pyotp
import pytest
from axes.models import AccessAttempt
from django.core import mail
from django.test import Client
from django.urls import reverse
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.stepup import SESSION_KEY
from audit.models import AuditEvent

from .two_factor_helpers import (
    ADDRESS,
    code,
    give_totp,
    send_code,
    sign_in_with_password,
    signed_in,
    signed_in_with_totp,
    wrong_code,
)


@pytest.fixture(autouse=True)
def _no_throttling_between_tries(settings):
    # django-otp makes a device wait after a failure; these tests type the right code next.
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    settings.OTP_STATIC_THROTTLE_FACTOR = 0


def signed_in_user_id(client: Client):
    return client.session.get("_auth_user_id")


# Setting up an authenticator app


def test_the_set_up_page_shows_the_secret_and_an_inline_qr_code(admin):
    response = signed_in(admin).get(reverse("totp_setup"))
    assert response.status_code == 200
    page = response.content.decode()
    secret = response.context["secret"]
    assert re.fullmatch(r"[A-Z2-7]+=*", secret)
    assert secret in page
    assert "<svg" in page
    assert "<img" not in page  # nothing fetched, not even from the portal
    device = TOTPDevice.objects.get(user=admin)
    assert not device.confirmed


def test_a_code_computed_from_the_shown_secret_turns_it_on(
    admin, acme, django_capture_on_commit_callbacks
):
    client = signed_in(admin)
    secret = client.get(reverse("totp_setup")).context["secret"]

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("totp_setup"), {"code": pyotp.TOTP(secret).now()})

    assert response.status_code == 302
    assert TOTPDevice.objects.get(user=admin).confirmed
    event = AuditEvent.objects.get(verb="second_factor.added")
    assert event.organization == acme
    assert event.actor == admin
    assert event.data == {"user": "acme-admin", "kind": "totp"}
    assert [m.to for m in mail.outbox] == [["acme-admin@example.com"]]
    assert "authenticator app added" in mail.outbox[0].subject


def test_a_wrong_code_leaves_it_off(admin):
    client = signed_in(admin)
    secret = client.get(reverse("totp_setup")).context["secret"]

    response = client.post(reverse("totp_setup"), {"code": wrong_code(secret)})

    assert response.status_code == 400
    assert "does not match" in response.content.decode()
    assert not TOTPDevice.objects.filter(user=admin, confirmed=True).exists()
    assert not AuditEvent.objects.filter(verb="second_factor.added").exists()
    assert mail.outbox == []


def test_reloading_the_page_keeps_the_secret_being_set_up(admin):
    client = signed_in(admin)
    first = client.get(reverse("totp_setup")).context["secret"]
    assert client.get(reverse("totp_setup")).context["secret"] == first


# Signing in


def test_the_password_alone_does_not_sign_in_a_user_with_a_factor(operator):
    give_totp(operator)
    client = Client()

    response = sign_in_with_password(client, operator)

    assert response.url == reverse("sign_in_second_factor")
    assert signed_in_user_id(client) is None
    assert client.get(reverse("org_list")).status_code == 302
    assert not AuditEvent.objects.filter(verb="auth.signed_in").exists()
    page = client.get(reverse("sign_in_second_factor")).content.decode()
    assert 'name="code"' in page


def test_the_code_completes_the_sign_in(operator, acme):
    give_totp(operator)
    client = Client()
    sign_in_with_password(client, operator)

    response = send_code(client, code())

    assert response.status_code == 302
    assert signed_in_user_id(client) == str(operator.pk)
    assert client.session[SESSION_KEY]["kind"] == "totp"
    assert AuditEvent.objects.filter(verb="auth.signed_in", actor=operator).count() == 1
    assert client.get(reverse("org_dashboard", args=["acme"])).status_code == 200


def test_the_sign_in_goes_on_to_the_page_asked_for(operator, acme):
    give_totp(operator)
    client = Client()
    client.post(
        reverse("login"),
        {"username": "operator", "password": "a-long-test-password", "next": "/orgs/acme/"},
    )
    assert send_code(client, code()).url == "/orgs/acme/"


def test_a_next_page_on_another_site_is_not_followed(operator, acme):
    give_totp(operator)
    client = Client()
    client.post(
        reverse("login"),
        {"username": "operator", "password": "a-long-test-password", "next": "https://evil.test/"},
    )
    assert "evil" not in send_code(client, code()).url


@pytest.mark.parametrize(
    "spelling",
    [
        lambda c: c,
        lambda c: f"{c[:3]} {c[3:]}",
        lambda c: f" {c}\n",
        lambda c: c.translate(str.maketrans("0123456789", "０１２３４５６７８９")),
        lambda c: f"{c[:3]}\u200b{c[3:]}",
        lambda c: f"{c[:3]}-{c[3:]}",
    ],
    ids=["plain", "spaced", "padded", "full-width", "zero-width space", "dashed"],
)
def test_other_spellings_of_the_right_code_are_accepted(operator, spelling):
    give_totp(operator)
    client = Client()
    sign_in_with_password(client, operator)
    assert send_code(client, spelling(code())).status_code == 302
    assert signed_in_user_id(client) == str(operator.pk)


def test_a_wrong_code_is_refused_and_recorded(operator, acme):
    give_totp(operator)
    client = Client()
    sign_in_with_password(client, operator)

    response = send_code(client, wrong_code())

    assert response.status_code == 400
    assert "This code is not valid" in response.content.decode()
    assert signed_in_user_id(client) is None
    failed = AuditEvent.objects.get(verb="auth.sign_in_failed")
    assert failed.data == {"username": "operator"}


def test_a_code_is_accepted_once(operator, acme):
    give_totp(operator)
    first = Client()
    sign_in_with_password(first, operator)
    used = code()
    assert send_code(first, used).status_code == 302

    again = Client()
    sign_in_with_password(again, operator)
    response = send_code(again, used)

    assert response.status_code == 400
    assert signed_in_user_id(again) is None


@pytest.mark.parametrize(
    "value,message",
    [
        ("", "Type the code"),
        ("12\x003456", "NUL"),
        ("1" * 10_000, "longer than any code"),
    ],
    ids=["empty", "NUL", "huge"],
)
def test_malformed_codes_are_refused_with_a_message(operator, value, message):
    give_totp(operator)
    client = Client()
    sign_in_with_password(client, operator)
    response = send_code(client, value)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert signed_in_user_id(client) is None


def test_the_code_step_needs_the_password_step_first(operator):
    give_totp(operator)
    response = send_code(Client(), code())
    assert response.url == reverse("login")


def test_the_code_step_expires(operator, settings, monkeypatch):
    give_totp(operator)
    client = Client()
    sign_in_with_password(client, operator)
    session = client.session
    session["sign_in_pending"]["at"] -= 6 * 60
    session.save()
    assert send_code(client, code()).url == reverse("login")
    assert signed_in_user_id(client) is None


def test_wrong_codes_lock_the_username_out_like_wrong_passwords(operator, acme):
    give_totp(operator)
    client = Client()
    sign_in_with_password(client, operator)
    statuses = [send_code(client, wrong_code()).status_code for _ in range(5)]
    assert statuses == [400, 400, 400, 400, 429]

    right = send_code(client, code())

    assert right.status_code == 429
    assert "Too many failed sign-ins" in right.content.decode()
    assert signed_in_user_id(client) is None
    assert AccessAttempt.objects.filter(username="operator", ip_address=ADDRESS).exists()
    assert AuditEvent.objects.filter(verb="auth.locked_out").exists()
    # The password step is locked too.
    assert sign_in_with_password(Client(), operator).status_code == 429


def test_password_and_code_failures_add_up(operator, acme):
    give_totp(operator)
    client = Client()
    for _ in range(3):
        client.post(
            reverse("login"), {"username": "operator", "password": "wrong"}, REMOTE_ADDR=ADDRESS
        )
    sign_in_with_password(client, operator)
    assert send_code(client, wrong_code()).status_code == 400
    assert send_code(client, wrong_code()).status_code == 429


# Recovery codes


def make_recovery_codes(user) -> tuple[Client, list[str]]:
    client = signed_in_with_totp(user)
    response = client.post(reverse("recovery_codes"))
    assert response.status_code == 200
    return client, response.context["codes"]


def test_recovery_codes_are_shown_once_and_recorded(operator, acme):
    give_totp(operator)
    client, codes = make_recovery_codes(operator)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert StaticToken.objects.filter(device__user=operator).count() == 10
    page = client.get(reverse("security")).content.decode()
    assert not any(c in page for c in codes)
    assert "10</strong> left" in page
    assert AuditEvent.objects.filter(verb="recovery_codes.generated", actor=operator).exists()


def test_a_recovery_code_signs_in_once(operator, acme):
    give_totp(operator)
    _, codes = make_recovery_codes(operator)
    first = Client()
    sign_in_with_password(first, operator)
    assert send_code(first, codes[0]).status_code == 302
    assert first.session[SESSION_KEY]["kind"] == "recovery"

    again = Client()
    sign_in_with_password(again, operator)
    assert send_code(again, codes[0]).status_code == 400
    assert send_code(again, codes[1].upper().replace("-", " ")).status_code == 302
    assert StaticToken.objects.filter(device__user=operator).count() == 8


def test_new_recovery_codes_replace_the_old_ones(operator, acme):
    give_totp(operator)
    client, old = make_recovery_codes(operator)
    new = client.post(reverse("recovery_codes")).context["codes"]
    assert not set(old) & set(new)
    fresh = Client()
    sign_in_with_password(fresh, operator)
    assert send_code(fresh, old[0]).status_code == 400


def test_recovery_codes_need_a_factor_first(operator):
    response = signed_in(operator).post(reverse("recovery_codes"))
    assert response.status_code == 302
    assert not StaticToken.objects.exists()


# Removing a factor


def test_removing_the_authenticator_app_is_recorded_and_mailed(
    operator, acme, django_capture_on_commit_callbacks
):
    give_totp(operator)
    client = signed_in_with_totp(operator)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("totp_remove"))

    assert response.status_code == 302
    assert not TOTPDevice.objects.filter(user=operator).exists()
    assert AuditEvent.objects.get(verb="second_factor.removed").data == {
        "user": "operator",
        "kind": "totp",
        # removed after confirming the app itself, at sign-in
        "second_factor": "totp",
    }
    assert [m.to for m in mail.outbox] == [["operator@example.com"]]
    assert "removed" in mail.outbox[0].subject


def test_the_last_factor_stays_where_an_organization_requires_one(operator, acme):
    acme.second_factor_policy = "everyone"
    acme.save()
    give_totp(operator)
    client = signed_in_with_totp(operator)

    response = client.post(reverse("totp_remove"), follow=True)

    assert "requires a second factor of you" in response.content.decode()
    assert TOTPDevice.objects.filter(user=operator, confirmed=True).exists()
    assert not AuditEvent.objects.filter(verb="second_factor.removed").exists()


def test_removing_needs_a_recent_second_factor(operator, acme):
    give_totp(operator)
    response = signed_in(operator).post(reverse("totp_remove"))
    assert response.status_code == 403
    assert 'name="step_up_code"' in response.content.decode()
    assert TOTPDevice.objects.filter(user=operator).exists()


def test_the_security_page_lists_the_factors(operator):
    give_totp(operator)
    page = signed_in(operator).get(reverse("security")).content.decode()
    assert "Remove the authenticator app" in page
    assert "Add a passkey" in page
    assert "accounts/passkeys.js" in page
    assert "<script>" not in page  # no inline script under the CSP


def test_the_security_page_is_in_the_user_menu(operator, acme):
    page = signed_in(operator).get(reverse("org_dashboard", args=["acme"])).content.decode()
    assert f'href="{reverse("security")}"' in page


def test_anonymous_is_sent_to_sign_in(db):
    for name in ("security", "totp_setup"):
        assert Client().get(reverse(name)).url.startswith(reverse("login"))


def test_another_users_passkey_cannot_be_removed(operator, admin):
    from accounts.models import Passkey

    give_totp(operator)
    theirs = Passkey.objects.create(
        user=admin, name="Admin key", credential_id="x1", public_key=b"k"
    )
    response = signed_in_with_totp(operator).post(
        reverse("passkey_remove", args=[theirs.pk]), follow=True
    )
    assert "already removed" in response.content.decode()
    assert Passkey.objects.filter(pk=theirs.pk).exists()
    assert not AuditEvent.objects.filter(verb="second_factor.removed").exists()


@pytest.mark.parametrize(
    "name",
    [
        "passkey_register_options",
        "passkey_register",
        "step_up_passkey_options",
        "step_up_passkey",
        "recovery_codes",
        "totp_remove",
    ],
)
def test_the_security_calls_need_a_sign_in(db, name):
    response = Client().post(reverse(name))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_the_passkey_calls_of_the_code_step_need_the_password_first(db):
    for name in ("sign_in_passkey_options", "sign_in_passkey"):
        response = Client().post(reverse(name), content_type="application/json")
        assert response.status_code == 403
        assert response.json()["error"] == "Sign in with your password first."


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[]", b'{"credential": "x"}', b'{"credential": {}}', b"{" * 70_000],
    ids=["empty", "not JSON", "a list", "no object", "no challenge", "huge"],
)
def test_a_malformed_passkey_answer_is_refused_and_counted(operator, body):
    from accounts.models import Passkey

    give_totp(operator)
    Passkey.objects.create(user=operator, name="Key", credential_id="k1", public_key=b"k")
    client = Client()
    sign_in_with_password(client, operator)
    client.post(reverse("sign_in_passkey_options"), REMOTE_ADDR=ADDRESS)

    response = client.post(
        reverse("sign_in_passkey"), body, content_type="application/json", REMOTE_ADDR=ADDRESS
    )

    assert response.status_code == 400
    assert response.json()["error"]
    assert signed_in_user_id(client) is None
    assert AuditEvent.objects.filter(verb="auth.sign_in_failed").exists()


def test_the_security_page_offers_to_confirm_before_changes(operator):
    give_totp(operator)
    client = signed_in(operator)
    assert "Confirm it is you" in client.get(reverse("security")).content.decode()
    asked = client.post(reverse("security_confirm"))
    assert asked.status_code == 403 and 'name="step_up_code"' in asked.content.decode()

    response = client.post(reverse("security_confirm"), {"step_up_code": code()})

    assert response.url == reverse("security")
    assert client.session[SESSION_KEY]["kind"] == "totp"
    assert "Confirm it is you" not in client.get(reverse("security")).content.decode()

"""Step-up: the changes that matter need a second factor confirmed in the last
STEP_UP_MAX_AGE; without it the portal asks for one and then completes the same change."""

import html
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from accounts.stepup import SESSION_KEY
from api.models import ApiToken
from api.tokens import create_token
from approvals import services
from approvals.models import ApprovalSettings, RequestStatus
from audit.models import AuditEvent
from responseportal.models import Role

from .approvals_helpers import submit
from .factories import MembershipFactory
from .test_approval_settings import form_data
from .two_factor_helpers import (
    ADDRESS,
    code,
    give_totp,
    sign_in_with_password,
    signed_in,
    signed_in_with_totp,
    wrong_code,
)

pytestmark = pytest.mark.django_db

HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


@pytest.fixture(autouse=True)
def _no_throttling_between_tries(settings):
    settings.OTP_TOTP_THROTTLE_FACTOR = 0


def carried(response) -> list[tuple[str, str]]:
    """The hidden fields the step-up page carries over, as the browser would send them."""
    page = response.content.decode()
    form = page[page.index('id="step-up-form"') :]
    return [(name, html.unescape(value)) for name, value in HIDDEN.findall(form)]


def confirm(client: Client, asked, value: str, **extra):
    """Type `value` into the step-up page `asked` and send its form, as a browser would."""
    page = asked.content.decode()
    action = html.unescape(
        re.search(r'<form method="post" action="([^"]+)" id="step-up-form"', page)[1]
    )
    data: dict[str, list[str]] = {}
    for name, field_value in carried(asked):
        if name != "csrfmiddlewaretoken":
            data.setdefault(name, []).append(field_value)
    data["step_up_code"] = [value]
    return client.post(action, data, **extra)


def is_step_up_page(response) -> bool:
    return response.status_code == 403 and 'name="step_up_code"' in response.content.decode()


def approve_url(action_request, slug="acme") -> str:
    return reverse("request_approve", args=[slug, action_request.uuid])


@pytest.fixture
def pending(acme, operator):
    return submit(acme, operator)


# Approving from the request's page


def test_approving_without_a_recent_factor_asks_for_one_and_changes_nothing(admin, pending):
    give_totp(admin)
    response = signed_in(admin).post(approve_url(pending), {"comment": "Go ahead"})

    assert is_step_up_page(response)
    assert ("comment", "Go ahead") in carried(response)
    pending.refresh_from_db()
    assert pending.status == RequestStatus.PENDING
    assert not AuditEvent.objects.filter(verb="request.approved").exists()


def test_the_code_completes_the_same_approval_and_the_event_names_the_factor(admin, pending):
    give_totp(admin)
    client = signed_in(admin)
    asked = client.post(approve_url(pending), {"comment": 'Go ahead <b>now</b> & "then"'})

    response = confirm(client, asked, code())

    assert response.status_code == 302
    pending.refresh_from_db()
    assert pending.status != RequestStatus.PENDING and pending.decided_by == admin
    event = AuditEvent.objects.get(verb="request.approved")
    assert event.data["second_factor"] == "totp"
    assert pending.approvals.get().comment == 'Go ahead <b>now</b> & "then"'


def test_a_wrong_code_asks_again_and_changes_nothing(admin, pending):
    give_totp(admin)
    client = signed_in(admin)
    asked = client.post(approve_url(pending), {"comment": "ok"})

    response = confirm(client, asked, wrong_code())

    assert is_step_up_page(response)
    assert "This code is not valid" in response.content.decode()
    assert ("comment", "ok") in carried(response)
    pending.refresh_from_db()
    assert pending.status == RequestStatus.PENDING


def test_wrong_codes_lock_the_username_out_like_wrong_sign_in_codes(admin, pending):
    give_totp(admin)
    client = signed_in(admin)
    asked = client.post(approve_url(pending), {"comment": "ok"}, REMOTE_ADDR=ADDRESS)
    answers = [confirm(client, asked, wrong_code(), REMOTE_ADDR=ADDRESS) for _ in range(5)]
    assert [is_step_up_page(answer) for answer in answers] == [True] * 4 + [False]
    assert answers[-1].status_code == 429

    right = confirm(client, asked, code(), REMOTE_ADDR=ADDRESS)

    assert right.status_code == 429
    assert "Too many failed sign-ins" in right.content.decode()
    pending.refresh_from_db()
    assert pending.status == RequestStatus.PENDING
    failed = AuditEvent.objects.filter(verb="auth.sign_in_failed")
    assert [event.data for event in failed] == [{"username": admin.get_username()}] * 5
    assert AuditEvent.objects.filter(verb="auth.locked_out").count() == 1
    # Signing in with the password is locked too.
    assert sign_in_with_password(Client(), admin).status_code == 429


def test_wrong_passwords_and_wrong_step_up_codes_add_up(admin, pending):
    give_totp(admin)
    for _ in range(3):
        Client().post(
            reverse("login"),
            {"username": admin.get_username(), "password": "wrong"},
            REMOTE_ADDR=ADDRESS,
        )
    client = signed_in(admin)
    asked = client.post(approve_url(pending), {"comment": "ok"}, REMOTE_ADDR=ADDRESS)

    assert is_step_up_page(confirm(client, asked, wrong_code(), REMOTE_ADDR=ADDRESS))
    assert confirm(client, asked, wrong_code(), REMOTE_ADDR=ADDRESS).status_code == 429
    assert confirm(client, asked, code(), REMOTE_ADDR=ADDRESS).status_code == 429
    pending.refresh_from_db()
    assert pending.status == RequestStatus.PENDING


def test_a_recent_factor_goes_through_a_lockout_it_does_not_need(admin, pending):
    # No code is checked, so none is refused: the lockout guards guessing only.
    give_totp(admin)
    client = signed_in_with_totp(admin)
    for _ in range(5):
        Client().post(
            reverse("login"),
            {"username": admin.get_username(), "password": "wrong"},
            REMOTE_ADDR=ADDRESS,
        )
    assert (
        client.post(approve_url(pending), {"comment": ""}, REMOTE_ADDR=ADDRESS).status_code == 302
    )


def test_a_refused_step_up_passkey_counts_too(admin):
    from accounts.models import Passkey

    give_totp(admin)
    Passkey.objects.create(user=admin, name="Key", credential_id="k1", public_key=b"k")
    client = signed_in(admin)
    client.post(reverse("step_up_passkey_options"), REMOTE_ADDR=ADDRESS)

    refused = client.post(
        reverse("step_up_passkey"),
        b"not json",
        content_type="application/json",
        REMOTE_ADDR=ADDRESS,
    )

    assert refused.status_code == 400
    assert AuditEvent.objects.get(verb="auth.sign_in_failed").data == {
        "username": admin.get_username()
    }


def test_a_recovery_code_confirms_too(admin, pending):
    give_totp(admin)
    codes = signed_in_with_totp(admin).post(reverse("recovery_codes")).context["codes"]
    client = signed_in(admin)
    asked = client.post(approve_url(pending), {"comment": ""})
    assert confirm(client, asked, codes[0]).status_code == 302
    assert AuditEvent.objects.get(verb="request.approved").data["second_factor"] == "recovery"


def test_a_factor_confirmed_at_sign_in_is_enough_for_a_while(admin, pending):
    give_totp(admin)
    response = signed_in_with_totp(admin).post(approve_url(pending), {"comment": ""})
    assert response.status_code == 302
    assert AuditEvent.objects.get(verb="request.approved").data["second_factor"] == "totp"


def test_an_old_confirmation_is_not_enough(admin, pending, settings):
    give_totp(admin)
    client = signed_in_with_totp(admin)
    session = client.session
    session[SESSION_KEY]["at"] -= settings.STEP_UP_MAX_AGE + 1
    session.save()
    assert is_step_up_page(client.post(approve_url(pending), {"comment": ""}))


def test_a_confirmation_from_the_future_is_not_trusted(admin, pending):
    give_totp(admin)
    client = signed_in_with_totp(admin)
    session = client.session
    session[SESSION_KEY]["at"] += 3600
    session.save()
    assert is_step_up_page(client.post(approve_url(pending), {"comment": ""}))


def test_a_user_without_a_factor_where_none_is_required_decides_as_before(admin, pending):
    response = signed_in(admin).post(approve_url(pending), {"comment": ""})
    assert response.status_code == 302
    event = AuditEvent.objects.get(verb="request.approved")
    assert "second_factor" not in event.data


def test_rejecting_asks_too_and_keeps_the_reason(admin, pending):
    give_totp(admin)
    client = signed_in(admin)
    asked = client.post(
        reverse("request_reject", args=["acme", pending.uuid]), {"reason": "Not this one"}
    )
    assert is_step_up_page(asked)
    assert confirm(client, asked, code()).status_code == 302
    pending.refresh_from_db()
    assert pending.status == RequestStatus.REJECTED
    assert AuditEvent.objects.get(verb="request.rejected").data["second_factor"] == "totp"


def test_outsiders_still_get_404_after_confirming(outsider, pending):
    give_totp(outsider)
    client = signed_in(outsider)
    asked = client.post(approve_url(pending), {"comment": ""})
    assert confirm(client, asked, code()).status_code == 404


# The queue's bulk decisions


def test_a_bulk_approval_carries_every_selected_request(admin, acme, operator):
    give_totp(admin)
    first, second = submit(acme, operator), submit(acme, operator, endpoints=["db-01"])
    client = signed_in(admin)
    asked = client.post(
        reverse("queue", args=["acme"]),
        {"decision": "approve", "requests": [first.uuid, second.uuid], "reason": ""},
    )
    assert is_step_up_page(asked)
    assert {v for n, v in carried(asked) if n == "requests"} == {str(first.uuid), str(second.uuid)}

    confirm(client, asked, code())

    for action_request in (first, second):
        action_request.refresh_from_db()
        assert action_request.status != RequestStatus.PENDING
    events = AuditEvent.objects.filter(verb="request.approved")
    assert [e.data["second_factor"] for e in events] == ["totp", "totp"]


# Settings, scope import, remote shells, API tokens


def test_saving_approval_settings_asks_and_then_saves(admin, acme):
    give_totp(admin)
    client = signed_in(admin)
    url = reverse("approval_settings", args=["acme"])
    asked = client.post(url, form_data(acme, auto_approval_enabled="on"))
    assert is_step_up_page(asked)
    assert not ApprovalSettings.for_organization(acme).auto_approval_enabled

    assert confirm(client, asked, code()).status_code == 302

    assert ApprovalSettings.for_organization(acme).auto_approval_enabled
    assert AuditEvent.objects.get(verb="settings.changed").data["second_factor"] == "totp"


def test_an_imported_scope_file_is_kept_while_the_factor_is_asked(admin, acme):
    give_totp(admin)
    client = signed_in(admin)
    url = reverse("approval_settings", args=["acme"])
    upload = SimpleUploadedFile("hosts.csv", b"db-01.acme.test\nweb-07.acme.test\n", "text/csv")
    asked = client.post(url, {**form_data(acme, scope_mode="all"), "scope_exceptions_csv": upload})
    assert is_step_up_page(asked)
    assert any(name == "step_up_files" for name, _ in carried(asked))

    assert confirm(client, asked, code()).status_code == 302

    assert ApprovalSettings.for_organization(acme).scope_exceptions == [
        "db-01.acme.test",
        "web-07.acme.test",
    ]


def test_ending_a_remote_shell_asks_first(admin, acme, operator):
    from .test_execution import shell

    give_totp(admin)
    active = shell(acme, operator, admin)
    client = signed_in(admin)
    url = reverse("end_session", args=["acme", active.uuid])
    asked = client.post(url, {"reason": "Triage done"})
    assert is_step_up_page(asked)
    active.refresh_from_db()
    assert active.ended_at is None

    confirm(client, asked, code())

    active.refresh_from_db()
    assert active.ended_at is not None
    assert AuditEvent.objects.get(verb="remote_shell.ended").data["second_factor"] == "totp"


def test_creating_an_api_token_asks_first(operator, acme):
    give_totp(operator)
    client = signed_in(operator)
    asked = client.post(reverse("api_tokens"), {"organization": "acme", "name": "SOAR", "days": 30})
    assert is_step_up_page(asked)
    assert not ApiToken.objects.exists()
    response = confirm(client, asked, code())
    assert response.status_code in (200, 302)
    assert ApiToken.objects.filter(name="SOAR").exists()


def test_revoking_an_api_token_asks_first(operator, acme):
    give_totp(operator)
    token, _ = create_token(operator, acme, name="old")
    client = signed_in(operator)
    asked = client.post(reverse("api_token_revoke", args=[token.pk]))
    assert is_step_up_page(asked)
    token.refresh_from_db()
    assert token.revoked_at is None
    confirm(client, asked, code())
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_bearer_api_calls_are_not_asked(operator, admin, acme):
    give_totp(admin)
    pending = submit(acme, operator)
    _, secret = create_token(admin, acme, name="approver")
    response = Client().post(
        f"/api/v1/orgs/acme/requests/{pending.uuid}/approve/",
        {"comment": "ok"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )
    assert response.status_code == 200


# Organizations that require a second factor


def test_where_required_a_user_without_a_factor_is_sent_to_set_one_up(operator, acme):
    acme.second_factor_policy = "everyone"
    acme.save()
    response = signed_in(operator).post(
        reverse("api_tokens"), {"organization": "acme", "name": "x", "days": 30}
    )
    assert response.url == reverse("security")
    assert not ApiToken.objects.exists()


def test_an_admin_of_a_requiring_organization_confirms_before_deciding(acme, operator):
    from .factories import UserFactory

    acme.second_factor_policy = "admins"
    acme.save()
    admin = UserFactory(username="strict-admin")
    MembershipFactory(user=admin, organization=acme, role=Role.ADMIN)
    give_totp(admin)
    pending = submit(acme, operator)
    client = signed_in(admin)
    asked = client.post(approve_url(pending), {"comment": ""})
    assert is_step_up_page(asked)
    confirm(client, asked, code())
    assert services.ActionRequest.objects.get(pk=pending.pk).status != RequestStatus.PENDING


def test_a_settings_preview_changes_nothing_and_is_not_asked(admin, acme):
    give_totp(admin)
    response = signed_in(admin).post(
        reverse("approval_settings", args=["acme"]),
        {**form_data(acme, auto_approval_enabled="on"), "preview": "1"},
    )
    assert response.status_code == 200
    assert not ApprovalSettings.for_organization(acme).auto_approval_enabled

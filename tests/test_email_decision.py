"""Approve or reject from the pending-approval e-mail: each admin's own signed links, a
confirmation page that changes nothing on GET, one POST through the pages' decision path."""

import re
from datetime import timedelta
from urllib.parse import quote, urlsplit

import pytest
from django.core import mail, signing
from django.urls import reverse
from django.utils import timezone

from approvals import email_links, notifications, services
from approvals.models import ActionRequest, EmailLinkUse, RequestStatus, RequestTarget
from audit.models import AuditEvent
from responseportal.models import Membership, Role

from .approvals_helpers import submit
from .conftest import client_for
from .factories import PASSWORD, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

LINK = re.compile(r"^(Approve|Reject): +(\S+)$", re.M)


@pytest.fixture(autouse=True)
def _portal_url(settings):
    settings.PORTAL_URL = "https://portal.example.net"


@pytest.fixture
def second_admin(acme):
    user = UserFactory(username="acme-admin-2")
    MembershipFactory(user=user, organization=acme, role=Role.ADMIN)
    return user


@pytest.fixture
def pending(acme, operator, admin, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        return submit(acme, operator, endpoints=["ws-1.acme.test", "10.0.0.7"])


def links_in(address) -> dict[str, str]:
    """The Approve and Reject links of the pending e-mail to `address`, as site paths."""
    (message,) = [m for m in mail.outbox if m.to == [address]]
    return {
        word.lower(): urlsplit(url).path
        for word, url in LINK.findall(message.body)
        if url.startswith("https://portal.example.net/")
    }


def path_for(action_request, user, decision, request_digest=None) -> str:
    token = email_links.token(
        action_request,
        user,
        decision,
        request_digest=request_digest or email_links.digest(action_request),
    )
    return reverse("email_decision", args=["acme", action_request.uuid, token])


def decision_events(action_request):
    return list(
        AuditEvent.objects.filter(
            request=action_request, verb__in=["request.approved", "request.rejected"]
        )
    )


def assert_untouched(action_request):
    action_request.refresh_from_db()
    assert action_request.status == RequestStatus.PENDING
    assert action_request.decided_by is None
    assert decision_events(action_request) == []
    assert not EmailLinkUse.objects.filter(request=action_request).exists()


# The e-mail


def test_each_admin_gets_their_own_approve_and_reject_links_in_text_and_html(
    acme, operator, admin, second_admin, django_capture_on_commit_callbacks
):
    from approvals.models import ApprovalSettings

    ApprovalSettings.objects.create(organization=acme, notify_emails=["soc@acme.example"])
    with django_capture_on_commit_callbacks(execute=True):
        action_request = submit(acme, operator, endpoints=["ws-1.acme.test"])

    first, second = links_in(admin.email), links_in(second_admin.email)
    assert set(first) == set(second) == {"approve", "reject"}
    assert first["approve"] != second["approve"] and first["approve"] != first["reject"]
    prefix = f"/orgs/acme/requests/{action_request.uuid}/email-decision/"
    for path in [*first.values(), *second.values()]:
        assert path.startswith(prefix)
    token = first["approve"].removeprefix(prefix).rstrip("/")
    link = email_links.read(token)
    assert (link.admin_id, link.decision, link.request_uuid) == (
        admin.pk,
        "approve",
        action_request.uuid,
    )
    # The extra address is nobody's account: it gets the request page, no decision links.
    assert links_in("soc@acme.example") == {}
    (soc,) = [m for m in mail.outbox if m.to == ["soc@acme.example"]]
    assert "email-decision" not in soc.body and "email-decision" not in soc.alternatives[0][0]
    (message,) = [m for m in mail.outbox if m.to == [admin.email]]
    html, mimetype = message.alternatives[0]
    assert mimetype == "text/html"
    for path in first.values():
        assert f'href="https://portal.example.net{path}"' in html


def test_the_email_says_what_will_run_on_which_targets(
    acme, operator, admin, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        submit(
            acme,
            operator,
            endpoints=["ws-1.acme.test", "10.0.0.7"],
            parameters={
                "endpoints": ["ws-1.acme.test", "10.0.0.7"],
                "description": "C2 beacon <every 60 s> & more",
            },
        )
    (message,) = [m for m in mail.outbox if m.to == [admin.email]]
    description = ActionRequest.objects.get().action.description
    assert f"\nIsolate Endpoint: {description}\n" in message.body
    assert "  Description: C2 beacon <every 60 s> & more\n" in message.body
    assert "  - ws-1.acme.test\n  - 10.0.0.7\n" in message.body
    html = message.alternatives[0][0]
    assert "C2 beacon &lt;every 60 s&gt; &amp; more" in html
    assert "<code>ws-1.acme.test</code>" in html and "<code>10.0.0.7</code>" in html
    assert "<every 60 s>" not in html


def test_the_requester_gets_no_links_for_their_own_request(
    acme, operator, admin, django_capture_on_commit_callbacks
):
    # The operator became an admin after submitting: still told, never given a way to decide.
    with django_capture_on_commit_callbacks(execute=True):
        action_request = submit(acme, operator)
    Membership.objects.filter(user=operator, organization=acme).update(role=Role.ADMIN)
    mail.outbox.clear()
    notifications.send(notifications.PENDING, action_request.pk)

    assert links_in(operator.email) == {}
    (message,) = [m for m in mail.outbox if m.to == [operator.email]]
    assert "You submitted this request, so another admin must decide it." in message.body
    assert "email-decision" not in message.alternatives[0][0]
    assert set(links_in(admin.email)) == {"approve", "reject"}


# GET changes nothing; signing in leads back


def test_a_get_shows_the_request_and_changes_nothing(pending, admin):
    page = client_for(admin).get(links_in(admin.email)["approve"])

    assert page.status_code == 200
    html = page.content.decode()
    assert "ws-1.acme.test" in html and "10.0.0.7" in html
    assert '<dd class="col-sm-9" id="requester">operator</dd>' in html
    assert 'id="confirm-decision"' in html and "✔</span> Approve</button>" in html
    assert_untouched(pending)


def test_a_head_or_put_changes_nothing(pending, admin):
    client = client_for(admin)
    path = links_in(admin.email)["approve"]
    assert client.put(path).status_code == 405
    assert client.delete(path).status_code == 405
    assert_untouched(pending)


def test_signed_out_the_link_asks_to_sign_in_and_leads_back(client, pending, admin):
    path = links_in(admin.email)["approve"]

    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={quote(path)}"
    assert client.post(path).status_code == 302
    assert_untouched(pending)

    signed_in = client.post(
        response["Location"], {"username": admin.username, "password": PASSWORD}
    )
    assert signed_in.status_code == 302 and signed_in["Location"] == path
    assert client.get(path).status_code == 200
    assert_untouched(pending)


# The confirming POST


def test_confirming_approves_through_the_decision_path_with_email_as_source(pending, admin):
    response = client_for(admin).post(
        links_in(admin.email)["approve"], {"comment": "Go ahead"}, HTTP_USER_AGENT="Mail/1.0"
    )

    assert response.status_code == 302
    assert response["Location"] == reverse("request_detail", args=["acme", pending.uuid])
    pending.refresh_from_db()
    assert (pending.status, pending.decided_by, pending.decision_reason) == (
        RequestStatus.APPROVED,
        admin,
        "Go ahead",
    )
    (event,) = decision_events(pending)
    assert (event.verb, event.source, event.actor, event.user_agent) == (
        "request.approved",
        "email",
        admin,
        "Mail/1.0",
    )
    assert event.get_source_display() == "E-mail link"
    assert EmailLinkUse.objects.get(request=pending).admin == admin


def test_rejecting_asks_for_the_reason_and_a_refused_form_does_not_use_the_link(pending, admin):
    client = client_for(admin)
    path = links_in(admin.email)["reject"]

    assert 'name="reason"' in client.get(path).content.decode()
    for blank in ["", "   ", "\n\t"]:
        refused = client.post(path, {"reason": blank})
        assert refused.status_code == 400
        assert services.REASON_REQUIRED in refused.content.decode()
    nul = client.post(path, {"reason": "bad\x00host"})
    assert nul.status_code == 400 and "NUL character" in nul.content.decode()
    huge = client.post(path, {"reason": "x" * 2_001})
    assert huge.status_code == 400 and "expected at most 2,000 characters" in huge.content.decode()
    assert_untouched(pending)

    done = client.post(path, {"reason": "Not our host"})
    assert done.status_code == 302
    pending.refresh_from_db()
    assert (pending.status, pending.decision_reason) == (RequestStatus.REJECTED, "Not our host")
    (event,) = decision_events(pending)
    assert (event.verb, event.source, event.data["reason"]) == (
        "request.rejected",
        "email",
        "Not our host",
    )


def test_a_link_works_once(pending, admin):
    client = client_for(admin)
    links = links_in(admin.email)
    assert client.post(links["approve"]).status_code == 302

    again = client.post(links["approve"])
    assert again.status_code == 409
    assert "This link was already used: you approved this request" in again.content.decode()
    other = client.post(links["reject"], {"reason": "changed my mind"})
    assert other.status_code == 409
    assert "already used" in other.content.decode()
    shown = client.get(links["approve"])
    assert shown.status_code == 200
    assert "already used" in shown.content.decode() and 'id="confirm-decision"' not in (
        shown.content.decode()
    )
    pending.refresh_from_db()
    assert pending.status == RequestStatus.APPROVED
    assert len(decision_events(pending)) == 1
    assert EmailLinkUse.objects.filter(request=pending).count() == 1


# Whose link


def test_another_admin_cannot_use_someone_elses_link(pending, admin, second_admin):
    path = links_in(admin.email)["approve"]
    for method in ("get", "post"):
        response = getattr(client_for(second_admin), method)(path)
        assert response.status_code == 403
        assert "sent to another admin" in response.content.decode()
    assert_untouched(pending)


@pytest.mark.parametrize("who", ["operator", "auditor", "outsider"])
def test_no_one_else_can_use_an_admins_link(cast, pending, who):
    path = links_in(cast["admin"].email)["approve"]
    assert client_for(cast[who]).post(path).status_code == 403
    assert_untouched(pending)


def test_an_admin_who_lost_the_role_cannot_use_their_link(acme, pending, admin):
    Membership.objects.filter(user=admin, organization=acme).update(role=Role.AUDITOR)
    client = client_for(admin)
    path = links_in(admin.email)["approve"]
    assert client.get(path).status_code == 403
    assert client.post(path).status_code == 403
    assert_untouched(pending)


def test_a_link_made_for_the_requester_is_refused(acme, operator, pending):
    # No e-mail carries one; a link signed for them anyway decides nothing.
    Membership.objects.filter(user=operator, organization=acme).update(role=Role.ADMIN)
    client = client_for(operator)
    path = path_for(pending, operator, "approve")
    page = client.get(path)
    assert page.status_code == 200 and "another admin must decide it" in page.content.decode()
    assert 'id="confirm-decision"' not in page.content.decode()
    assert client.post(path).status_code == 409
    assert_untouched(pending)


# Tampering


TAMPERINGS = {
    "last character changed": lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),
    "cut short": lambda t: t[:-5],
    "signature dropped": lambda t: t.rpartition(":")[0],
    "upper-cased": str.upper,
    "zero-width space inside": lambda t: t[:10] + "\u200b" + t[10:],
    "NUL byte": lambda t: t + "\x00",
    "huge": lambda t: t + "A" * 20_000,
    "signed with another salt": lambda t: signing.dumps(signing.loads(t, salt=email_links.SALT)),
    "not a token": lambda t: "approve",
}


@pytest.mark.parametrize("kind", TAMPERINGS)
def test_a_tampered_link_is_refused_and_changes_nothing(pending, admin, kind):
    token = links_in(admin.email)["approve"].rstrip("/").rsplit("/", 1)[1]
    bad = TAMPERINGS[kind](token)
    path = f"/orgs/acme/requests/{pending.uuid}/email-decision/{quote(bad, safe=':')}/"
    client = client_for(admin)
    for method in ("get", "post"):
        response = getattr(client, method)(path)
        assert response.status_code in (400, 404), kind
        if response.status_code == 400:
            assert "not a valid approval link" in response.content.decode()
    assert_untouched(pending)


def test_a_link_signed_for_a_decision_that_does_not_exist_is_refused(pending, admin):
    token = signing.dumps(
        {"r": str(pending.uuid), "a": admin.pk, "d": "delete", "h": email_links.digest(pending)},
        salt=email_links.SALT,
    )
    path = reverse("email_decision", args=["acme", pending.uuid, token])
    assert client_for(admin).post(path).status_code == 400
    assert_untouched(pending)


def test_a_link_moved_to_another_request_is_refused(acme, operator, admin, pending):
    other = submit(acme, operator, endpoints=["ws-9.acme.test"])
    token = links_in(admin.email)["approve"].rstrip("/").rsplit("/", 1)[1]
    path = reverse("email_decision", args=["acme", other.uuid, token])
    response = client_for(admin).post(path)
    assert response.status_code == 400
    assert_untouched(pending)
    assert_untouched(other)


def test_a_link_moved_to_another_organization_is_a_404(globex, pending, admin):
    MembershipFactory(user=admin, organization=globex, role=Role.ADMIN)
    token = links_in(admin.email)["approve"].rstrip("/").rsplit("/", 1)[1]
    path = reverse("email_decision", args=["globex", pending.uuid, token])
    assert client_for(admin).post(path).status_code == 404
    assert_untouched(pending)


# Stale links


def test_a_link_whose_request_changed_says_so_and_does_nothing(pending, admin):
    path = links_in(admin.email)["approve"]
    RequestTarget.objects.filter(request=pending, value="10.0.0.7").update(value="10.0.0.8")
    client = client_for(admin)

    page = client.get(path)
    assert "This request changed after the e-mail was sent" in page.content.decode()
    assert 'id="confirm-decision"' not in page.content.decode()
    assert client.post(path).status_code == 409
    assert_untouched(pending)


@pytest.mark.parametrize(
    "change",
    [
        {"parameters": {"endpoints": ["ws-1.acme.test", "10.0.0.7"], "description": "other"}},
        {"expires_at": "later"},
    ],
)
def test_a_change_of_parameters_or_expiry_makes_the_link_stale(pending, admin, change):
    path = links_in(admin.email)["approve"]
    if "expires_at" in change:
        change = {"expires_at": pending.expires_at + timedelta(hours=1)}
    ActionRequest.objects.filter(pk=pending.pk).update(**change)
    response = client_for(admin).post(path)
    assert response.status_code == 409
    assert "This request changed" in response.content.decode()
    assert_untouched(pending)


def test_an_expired_request_link_says_so_and_does_nothing(pending, admin):
    path = links_in(admin.email)["approve"]
    ActionRequest.objects.filter(pk=pending.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1),
    )
    client = client_for(admin)
    assert "This request expired at" in client.get(path).content.decode()
    response = client.post(path)
    assert response.status_code == 409
    pending.refresh_from_db()
    assert pending.status in (RequestStatus.PENDING, RequestStatus.EXPIRED)
    assert decision_events(pending) == []
    assert not EmailLinkUse.objects.exists()


def test_a_link_of_a_request_decided_meanwhile_says_so(pending, admin, second_admin):
    path = links_in(admin.email)["approve"]
    services.reject_request(pending.pk, actor=second_admin, reason="Not ours")

    response = client_for(admin).post(path)
    assert response.status_code == 409
    assert "already rejected by acme-admin-2" in response.content.decode()
    pending.refresh_from_db()
    assert (pending.status, pending.decided_by) == (RequestStatus.REJECTED, second_admin)
    assert not EmailLinkUse.objects.exists()


def test_a_link_of_a_cancelled_request_says_so(pending, operator, admin):
    path = links_in(admin.email)["reject"]
    services.cancel_request(pending.pk, actor=operator)

    response = client_for(admin).post(path, {"reason": "x"})
    assert response.status_code == 409
    assert "This request was cancelled by operator" in response.content.decode()
    pending.refresh_from_db()
    assert pending.status == RequestStatus.CANCELLED

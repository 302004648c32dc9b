"""E-mail notifications: who is told what, after commit, and never at the cost of a change."""

from datetime import timedelta

import pytest
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.utils import timezone

from approvals import notifications, services
from approvals.execution import tasks
from approvals.models import ApprovalSettings, RequestStatus
from responseportal.models import Role

from .approvals_helpers import submit, turn_on_auto_approval
from .factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _instant_executor(settings):
    settings.SIMULATED_EXECUTOR_DELAY = 0
    settings.RESPONSE_EXECUTOR = "simulated"
    settings.PORTAL_URL = "https://portal.example.net"


def sent_to(address):
    return [message for message in mail.outbox if message.to == [address]]


def link(request):
    return f"https://portal.example.net/orgs/acme/requests/{request.uuid}/"


class FailingBackend(BaseEmailBackend):
    def send_messages(self, messages):
        raise ConnectionRefusedError("[Errno 111] Connection refused (SMTP)")


def test_admins_and_extra_addresses_are_told_of_a_pending_request(
    acme, operator, admin, auditor, outsider, django_capture_on_commit_callbacks
):
    ApprovalSettings.objects.create(
        organization=acme, notify_emails=["soc@acme.example", "ACME-ADMIN@example.com"]
    )
    with django_capture_on_commit_callbacks(execute=True):
        request = submit(acme, operator, endpoints=["ws-1", "ws-2"])

    assert sorted(m.to[0] for m in mail.outbox) == ["acme-admin@example.com", "soc@acme.example"]
    message = sent_to("acme-admin@example.com")[0]
    assert message.subject == (
        "[Response Portal] Approval needed: Isolate Endpoint in Acme Corporation"
    )
    assert message.from_email == "response-portal@localhost"
    assert "waits for your decision" in message.body
    assert "Requested by: operator" in message.body
    assert "  - ws-1\n  - ws-2\n" in message.body
    assert link(request) in message.body
    assert "&amp;" not in message.body and "&#x27;" not in message.body


def test_nothing_is_sent_before_the_change_commits(acme, operator, admin):
    submit(acme, operator)  # the test's transaction never commits

    assert mail.outbox == []


def test_inactive_admins_and_admins_without_an_address_are_not_told(
    acme, operator, admin, django_capture_on_commit_callbacks
):
    gone = UserFactory(username="gone-admin", is_active=False)
    MembershipFactory(user=gone, organization=acme, role=Role.ADMIN)
    silent = UserFactory(username="silent-admin", email="")
    MembershipFactory(user=silent, organization=acme, role=Role.ADMIN)

    with django_capture_on_commit_callbacks(execute=True):
        submit(acme, operator)

    assert [m.to for m in mail.outbox] == [["acme-admin@example.com"]]


def test_admins_are_told_of_an_auto_approved_request_and_the_requester_of_its_end(
    acme, operator, admin, django_capture_on_commit_callbacks
):
    # At once, without a digest (tests/test_digests.py has the digest).
    turn_on_auto_approval(acme, digest_minutes=0)
    with django_capture_on_commit_callbacks(execute=True):
        submit(acme, operator)

    [to_admin] = sent_to("acme-admin@example.com")
    assert to_admin.subject.startswith("[Response Portal] Approved automatically: Isolate Endpoint")
    [to_requester] = sent_to("operator@example.com")
    assert to_requester.subject == (
        "[Response Portal] Successful: Isolate Endpoint in Acme Corporation"
    )


def test_the_requester_is_told_of_the_approval_and_then_of_the_outcome(
    acme, operator, admin, django_capture_on_commit_callbacks
):
    request = submit(acme, operator, endpoints=["ws-1", "fail-2"])
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.approve_request(request.pk, actor=admin, comment="Go ahead")

    approved, finished = sent_to("operator@example.com")
    assert approved.subject == "[Response Portal] Approved: Isolate Endpoint in Acme Corporation"
    assert "approved by acme-admin" in approved.body and "Comment: Go ahead" in approved.body
    assert finished.subject == (
        "[Response Portal] Partially successful: Isolate Endpoint in Acme Corporation"
    )
    assert "  - ws-1: Successful (Simulated isolate_endpoint on ws-1.)" in finished.body
    assert "  - fail-2: Failed (Simulated failure: fail-2 did not answer.)" in finished.body
    assert link(request) in finished.body


def test_the_requester_is_told_of_a_rejection_with_its_reason(
    acme, operator, admin, django_capture_on_commit_callbacks
):
    request = submit(acme, operator)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.reject_request(request.pk, actor=admin, reason="Wrong host <ws-1> & co")

    [message] = mail.outbox
    assert message.to == ["operator@example.com"]
    assert message.subject == "[Response Portal] Rejected: Isolate Endpoint in Acme Corporation"
    assert "Reason: Wrong host <ws-1> & co" in message.body


def test_the_requester_is_told_of_an_expiry(
    acme, operator, admin, django_capture_on_commit_callbacks
):
    request = submit(acme, operator)
    request.expires_at = timezone.now() - timedelta(minutes=1)
    request.save()
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        assert services.expire_overdue_requests() == 1

    [message] = mail.outbox
    assert message.to == ["operator@example.com"]
    assert message.subject.startswith("[Response Portal] Expired without a decision")
    assert "nobody decided it in time" in message.body


def test_a_failing_mail_server_never_blocks_a_decision(
    acme, operator, admin, settings, django_capture_on_commit_callbacks, caplog
):
    request = submit(acme, operator)
    settings.EMAIL_BACKEND = "tests.test_notifications.FailingBackend"

    with django_capture_on_commit_callbacks(execute=True):
        services.approve_request(request.pk, actor=admin)

    request.refresh_from_db()
    assert request.status == RequestStatus.SUCCESSFUL
    assert "The approved e-mail about request" in caplog.text
    assert "could not be sent" in caplog.text


def test_a_broker_that_is_down_never_blocks_a_decision(
    acme, operator, admin, monkeypatch, django_capture_on_commit_callbacks, caplog
):
    def down(*args, **kwargs):
        raise ConnectionRefusedError("Error 111 connecting to 127.0.0.1:6379.")

    request = submit(acme, operator)
    monkeypatch.setattr(tasks.deliver_notification, "delay", down)

    with django_capture_on_commit_callbacks(execute=True):
        services.reject_request(request.pk, actor=admin, reason="No")

    request.refresh_from_db()
    assert request.status == RequestStatus.REJECTED
    assert "The rejected e-mail or webhook notice about request" in caplog.text
    # It waits in the outbox for the periodic delivery.
    assert request.notifications.get(kind="rejected").sent_at is None


def test_a_requester_without_an_address_gets_nothing(acme, operator, admin):
    operator.email = ""
    operator.save()
    request = submit(acme, operator)

    assert notifications.send(notifications.APPROVED, request.pk) == 0


def test_the_link_carries_no_secret(acme, operator, settings):
    request = submit(acme, operator)

    assert notifications.request_url(request) == link(request)
    assert "?" not in notifications.request_url(request)


def test_an_unknown_kind_is_a_programming_error():
    with pytest.raises(ValueError, match="'gossip' is not a notification"):
        notifications.schedule("gossip", 1)


def test_a_caller_holding_the_request_and_settings_is_spared_their_reads(
    acme, operator, admin, django_assert_num_queries
):
    organization_settings = ApprovalSettings.for_organization(acme)
    organization_settings.notify_emails = ["soc@acme.test"]
    organization_settings.save()
    pending = submit(acme, operator)

    # With the id alone: the request, the settings, the admins' addresses, the notification.
    with django_assert_num_queries(4):
        by_id = notifications.schedule(notifications.PENDING, pending.pk)
    # Held: the admins' addresses and the notification only.
    with django_assert_num_queries(2):
        held = notifications.schedule(
            notifications.PENDING, pending, approval_settings=organization_settings
        )

    assert (by_id.email_due, held.email_due) == (True, True)
    assert notifications.recipients(
        notifications.PENDING, pending, approval_settings=organization_settings
    ) == [admin.email, "soc@acme.test"]

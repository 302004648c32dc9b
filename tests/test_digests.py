"""Digests: automatic approvals announced to the admins in one e-mail per organization per
interval, and a requester's outcomes past the first few of an interval in one e-mail; what
waits for a decision, reminders and break-glass runs still go out at once. With a frozen clock
(time-machine), through the same outbox, e-mail and webhook as every notification."""

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail
from django.core.cache import cache
from django.core.mail.backends.base import BaseEmailBackend
from django.urls import reverse

from approvals import digests, notifications
from approvals.execution import tasks
from approvals.models import ActionRequest, ApprovalSettings, Notification
from approvals.notifications import REQUESTER_DIGEST_AFTER
from audit.models import AuditEvent
from responseportal.models import Role

from .approvals_helpers import at_once, submit, turn_on_auto_approval
from .conftest import client_for
from .factories import MembershipFactory, UserFactory
from .test_approval_settings import form_data
from .test_notification_webhook import Receiver, use_webhook
from .test_notification_webhook import receiver as receiver  # a fixture

pytestmark = pytest.mark.django_db

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
PORTAL = "https://portal.example.net"
ADMIN = "acme-admin@example.com"
EXTRA = "soc@acme.example"
REQUESTER = "operator@example.com"
AUTO_SUBJECT = re.compile(r"^\[Response Portal\] Approved automatically: ")


@pytest.fixture(autouse=True)
def _portal(settings):
    settings.PORTAL_URL = PORTAL
    cache.delete(notifications.WEBHOOK_BATCH_QUEUED)
    yield
    cache.delete(notifications.WEBHOOK_BATCH_QUEUED)


@pytest.fixture
def clock():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
def auto(acme, admin):
    return turn_on_auto_approval(acme, notify_emails=[EXTRA])


def link(action_request) -> str:
    return f"{PORTAL}/orgs/{action_request.organization.slug}/requests/{action_request.uuid}/"


def to(address) -> list:
    return [message for message in mail.outbox if message.to == [address]]


def auto_announcements(address) -> list:
    return [message for message in to(address) if AUTO_SUBJECT.match(message.subject)]


def run_many(organization, operator, count, capture, prefix="ws"):
    with capture(execute=True):
        return [
            submit(organization, operator, endpoints=[f"{prefix}-{n}.acme.test", f"10.0.0.{n}"])
            for n in range(count)
        ]


def digests_at(clock, moment, capture) -> int:
    clock.move_to(moment)
    with capture(execute=True):
        return digests.send_due_digests()


# Automatic approvals, to the admins


def test_automatic_approvals_of_an_interval_make_one_digest_listing_each(
    clock, acme, operator, auto, django_capture_on_commit_callbacks
):
    requests = run_many(acme, operator, 7, django_capture_on_commit_callbacks)
    assert auto_announcements(ADMIN) == []
    assert (
        digests_at(
            clock, START + timedelta(minutes=4, seconds=59), django_capture_on_commit_callbacks
        )
        == 0
    )
    assert auto_announcements(ADMIN) == []

    # The admin and the extra address; and the requester, of the outcomes past the first three.
    assert digests_at(clock, START + timedelta(minutes=5), django_capture_on_commit_callbacks) == 3

    [to_admin] = auto_announcements(ADMIN)
    [to_extra] = auto_announcements(EXTRA)
    assert to_admin.subject == (
        "[Response Portal] Approved automatically: 7 requests in Acme Corporation"
    )
    assert to_extra.body == to_admin.body
    html = to_admin.alternatives[0][0]
    for n, action_request in enumerate(requests):
        assert to_admin.body.count(link(action_request)) == 1
        assert f'href="{link(action_request)}"' in html
        assert f"ws-{n}.acme.test, 10.0.0.{n}" in to_admin.body
        assert f"<code>ws-{n}.acme.test</code>" in html
    assert to_admin.body.count("Isolate Endpoint, requested by operator") == 7
    assert "7 response actions were approved automatically in Acme Corporation" in to_admin.body

    # Nothing is sent twice.
    assert digests_at(clock, START + timedelta(minutes=30), django_capture_on_commit_callbacks) == 0
    assert len(auto_announcements(ADMIN)) == 1
    assert not Notification.objects.filter(
        kind=notifications.AUTO_APPROVED, sent_at__isnull=True
    ).exists()


def test_the_next_interval_is_the_next_digest(
    clock, acme, operator, auto, django_capture_on_commit_callbacks
):
    run_many(acme, operator, 2, django_capture_on_commit_callbacks)
    digests_at(clock, START + timedelta(minutes=5), django_capture_on_commit_callbacks)
    clock.move_to(START + timedelta(minutes=6))
    later = run_many(acme, operator, 3, django_capture_on_commit_callbacks, prefix="db")

    assert digests_at(clock, START + timedelta(minutes=10), django_capture_on_commit_callbacks) == 0
    assert digests_at(clock, START + timedelta(minutes=11), django_capture_on_commit_callbacks) == 2
    first, second = auto_announcements(ADMIN)
    assert first.subject.endswith(": 2 requests in Acme Corporation")
    assert second.subject.endswith(": 3 requests in Acme Corporation")
    assert [line.strip() for line in second.body.splitlines() if PORTAL in line] == [
        link(action_request) for action_request in later
    ]


def test_one_automatic_approval_in_an_interval_is_the_ordinary_email(
    clock, acme, operator, auto, django_capture_on_commit_callbacks
):
    [action_request] = run_many(acme, operator, 1, django_capture_on_commit_callbacks)
    digests_at(clock, START + timedelta(minutes=5), django_capture_on_commit_callbacks)

    [message] = auto_announcements(ADMIN)
    assert message.subject == (
        "[Response Portal] Approved automatically: Isolate Endpoint in Acme Corporation"
    )
    assert link(action_request) in message.body


def test_each_organization_has_its_own_digest_and_its_own_interval(
    clock, acme, globex, operator, outsider, auto, django_capture_on_commit_callbacks
):
    MembershipFactory(user=operator, organization=globex, role=Role.OPERATOR)
    globex_admin = outsider  # an admin of globex
    turn_on_auto_approval(globex, digest_minutes=15)
    acme_requests = run_many(acme, operator, 2, django_capture_on_commit_callbacks)
    globex_requests = run_many(globex, operator, 3, django_capture_on_commit_callbacks)

    digests_at(clock, START + timedelta(minutes=5), django_capture_on_commit_callbacks)
    [to_acme] = auto_announcements(ADMIN)
    assert auto_announcements(globex_admin.email) == []
    assert all(link(r) not in to_acme.body for r in globex_requests)
    assert all(link(r) in to_acme.body for r in acme_requests)

    digests_at(clock, START + timedelta(minutes=15), django_capture_on_commit_callbacks)
    [to_globex] = auto_announcements(globex_admin.email)
    assert to_globex.subject.endswith(": 3 requests in Globex Corporation")
    assert all(link(r) in to_globex.body for r in globex_requests)
    assert len(auto_announcements(ADMIN)) == 1


def test_interval_zero_announces_each_automatic_approval_at_once(
    clock, acme, operator, admin, django_capture_on_commit_callbacks
):
    turn_on_auto_approval(acme, digest_minutes=0)
    requests = run_many(acme, operator, 5, django_capture_on_commit_callbacks)

    announcements = auto_announcements(ADMIN)
    assert [m.subject for m in announcements] == [
        "[Response Portal] Approved automatically: Isolate Endpoint in Acme Corporation"
    ] * 5
    assert [link(r) in m.body for m, r in zip(announcements, requests, strict=True)] == [True] * 5
    assert len(to(REQUESTER)) == 5  # every outcome at once too
    assert not Notification.objects.filter(in_digest=True).exists()
    assert digests_at(clock, START + timedelta(hours=1), django_capture_on_commit_callbacks) == 0


def test_a_digest_holds_at_most_its_limit_and_the_next_run_sends_the_rest(
    clock, acme, operator, auto, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(digests, "DIGEST_LIMIT", 3)
    run_many(acme, operator, 5, django_capture_on_commit_callbacks)
    digests_at(clock, START + timedelta(minutes=5), django_capture_on_commit_callbacks)
    digests_at(clock, START + timedelta(minutes=6), django_capture_on_commit_callbacks)

    first, second = auto_announcements(ADMIN)
    assert first.subject.endswith(": 3 requests in Acme Corporation")
    assert second.subject.endswith(": 2 requests in Acme Corporation")


# What still goes out at once


def test_a_request_waiting_for_a_decision_is_announced_at_once(
    clock, acme, operator, admin, django_capture_on_commit_callbacks
):
    ApprovalSettings.objects.create(organization=acme, digest_minutes=60)
    with django_capture_on_commit_callbacks(execute=True):
        action_request = submit(acme, operator)

    [message] = to(ADMIN)
    assert message.subject.startswith("[Response Portal] Approval needed: ")
    assert link(action_request) in message.body
    assert not Notification.objects.filter(in_digest=True).exists()


def test_a_break_glass_run_is_announced_at_once(
    clock, acme, operator, admin, django_capture_on_commit_callbacks
):
    ApprovalSettings.objects.create(
        organization=acme,
        digest_minutes=60,
        break_glass_enabled=True,
        break_glass_actions=["isolate_endpoint"],
    )
    with django_capture_on_commit_callbacks(execute=True):
        submit(
            acme,
            operator,
            break_glass=True,
            justification="Ransomware spreading from this host to the file servers",
        )

    assert [m.subject for m in to(ADMIN)] == [
        "[Response Portal] Break-glass, review needed: Isolate Endpoint in Acme Corporation"
    ]
    assert not Notification.objects.filter(kind=notifications.BREAK_GLASS, in_digest=True).exists()


# Outcomes, to the requester


def outcomes(address=REQUESTER) -> list:
    return [m for m in to(address) if not AUTO_SUBJECT.match(m.subject)]


def test_a_few_outcomes_in_an_interval_go_one_by_one(
    clock, acme, operator, auto, django_capture_on_commit_callbacks
):
    requests = run_many(acme, operator, REQUESTER_DIGEST_AFTER, django_capture_on_commit_callbacks)

    sent = outcomes()
    assert [m.subject for m in sent] == [
        "[Response Portal] Successful: Isolate Endpoint in Acme Corporation"
    ] * 3
    assert [link(r) in m.body for m, r in zip(sent, requests, strict=True)] == [True] * 3
    digests_at(clock, START + timedelta(minutes=5), django_capture_on_commit_callbacks)
    assert len(outcomes()) == 3


def test_outcomes_past_the_first_few_wait_for_one_digest(
    clock, acme, operator, auto, django_capture_on_commit_callbacks
):
    requests = run_many(acme, operator, 8, django_capture_on_commit_callbacks)
    assert len(outcomes()) == REQUESTER_DIGEST_AFTER

    digests_at(clock, START + timedelta(minutes=5), django_capture_on_commit_callbacks)

    *single, digest = outcomes()
    assert len(single) == 3
    assert digest.subject == "[Response Portal] Finished: 5 of your requests in Acme Corporation"
    listed = [line.strip() for line in digest.body.splitlines() if PORTAL in line]
    assert listed == [link(r) for r in requests[3:]]
    assert digest.body.count("Isolate Endpoint: successful") == 5
    assert "ws-7.acme.test (successful), 10.0.0.7 (successful)" in digest.body
    # The admins' digest is another e-mail, to other people.
    assert all(REQUESTER not in m.to for m in auto_announcements(ADMIN))


def test_the_count_is_per_requester(
    clock, acme, operator, auto, django_capture_on_commit_callbacks
):
    other = UserFactory(username="operator-2")
    MembershipFactory(user=other, organization=acme, role=Role.OPERATOR)
    run_many(acme, operator, 3, django_capture_on_commit_callbacks)
    run_many(acme, other, 3, django_capture_on_commit_callbacks, prefix="db")

    assert len(outcomes()) == 3 and len(outcomes(other.email)) == 3
    assert not Notification.objects.filter(kind=notifications.FINISHED, in_digest=True).exists()


def test_outcomes_of_an_earlier_interval_do_not_count(
    clock, acme, operator, auto, django_capture_on_commit_callbacks
):
    run_many(acme, operator, 3, django_capture_on_commit_callbacks)
    clock.move_to(START + timedelta(minutes=5, seconds=1))
    run_many(acme, operator, 3, django_capture_on_commit_callbacks, prefix="db")

    assert len(outcomes()) == 6


# Webhook notices: one per event, delivered together


class HeldBroker:
    """Stands for the broker holding the batch task until its countdown is over."""

    def __init__(self, monkeypatch):
        self.queued: list[dict] = []
        monkeypatch.setattr(tasks.deliver_webhooks, "apply_async", self.apply_async)

    def apply_async(self, *args, **kwargs):
        self.queued.append(kwargs)


def test_webhook_notices_are_one_per_event_sent_by_one_task(
    clock, acme, operator, auto, receiver, monkeypatch, django_capture_on_commit_callbacks
):
    use_webhook(acme, receiver)
    broker = HeldBroker(monkeypatch)
    requests = run_many(acme, operator, 6, django_capture_on_commit_callbacks)
    announced = [
        json.loads(body)
        for _, body in Receiver.calls
        if json.loads(body)["event"] == notifications.AUTO_APPROVED
    ]
    assert announced == []  # waiting for the batch
    assert broker.queued == [{"countdown": notifications.WEBHOOK_BATCH_DELAY}]

    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.deliver_webhooks() == 0  # the e-mails still wait for the digest

    announced = [
        (headers["X-Response-Portal-Event"], json.loads(body))
        for headers, body in Receiver.calls
        if json.loads(body)["event"] == notifications.AUTO_APPROVED
    ]
    assert [payload["request"]["uuid"] for _, payload in announced] == [
        str(r.uuid) for r in requests
    ]
    assert {event for event, _ in announced} == {"auto_approved"}
    assert announced[0][1]["request"]["url"] == link(requests[0])
    assert announced[0][1]["request"]["targets"] == ["ws-0.acme.test", "10.0.0.0"]

    # The next batch finds nothing new; a new event queues a new batch.
    calls = len(Receiver.calls)
    assert tasks.deliver_webhooks() == 0
    assert len(Receiver.calls) == calls
    run_many(acme, operator, 1, django_capture_on_commit_callbacks, prefix="db")
    assert len(broker.queued) == 2

    digests_at(clock, START + timedelta(minutes=5), django_capture_on_commit_callbacks)
    held = Notification.objects.filter(kind=notifications.AUTO_APPROVED)
    assert held.filter(sent_at__isnull=False).count() == 6  # the 7th's webhook is still queued
    assert len(auto_announcements(ADMIN)) == 1


def test_a_webhook_notice_that_fails_is_retried_by_the_periodic_delivery(
    clock, acme, operator, auto, receiver, django_capture_on_commit_callbacks
):
    use_webhook(acme, receiver)
    Receiver.answer = 503
    [action_request] = run_many(acme, operator, 1, django_capture_on_commit_callbacks)
    notification = Notification.objects.get(
        request=action_request, kind=notifications.AUTO_APPROVED
    )
    assert (notification.attempts, notification.webhook_sent_at) == (1, None)
    assert "webhook" in notification.last_error

    Receiver.answer = 204
    clock.move_to(START + timedelta(minutes=2))
    notifications.deliver_due()
    notification.refresh_from_db()
    assert notification.webhook_sent_at is not None
    assert notification.sent_at is None  # the e-mail waits for its digest
    assert notification.next_attempt_at is None
    digests_at(clock, START + timedelta(minutes=5), django_capture_on_commit_callbacks)
    notification.refresh_from_db()
    assert notification.sent_at is not None
    events = [json.loads(body)["request"]["uuid"] for _, body in Receiver.calls]
    assert events.count(str(action_request.uuid)) >= 2  # auto_approved and finished


# Failures and two runs at once


class FailingBackend(BaseEmailBackend):
    def send_messages(self, messages):
        raise ConnectionRefusedError("[Errno 111] Connection refused (SMTP)")


def test_a_mail_server_that_fails_leaves_the_digest_for_the_next_run(
    clock, acme, operator, auto, settings, django_capture_on_commit_callbacks
):
    requests = run_many(acme, operator, 4, django_capture_on_commit_callbacks)
    settings.EMAIL_BACKEND = "tests.test_digests.FailingBackend"
    assert digests_at(clock, START + timedelta(minutes=5), django_capture_on_commit_callbacks) == 0
    held = Notification.objects.filter(kind=notifications.AUTO_APPROVED)
    assert set(held.values_list("attempts", "email_sent_at")) == {(1, None)}
    assert "ConnectionRefusedError" in held.first().last_error

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    # The admins' digest (two addresses) and the fourth outcome, alone, to the requester.
    assert digests_at(clock, START + timedelta(minutes=6), django_capture_on_commit_callbacks) == 3
    [message] = auto_announcements(ADMIN)
    assert all(link(r) in message.body for r in requests)
    assert set(held.values_list("last_error", flat=True)) == {""}


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_send_one_digest(requires_postgresql, acme, operator, admin):
    turn_on_auto_approval(acme, notify_emails=[EXTRA])
    requests = [submit(acme, operator, endpoints=[f"ws-{n}.acme.test"]) for n in range(12)]
    mail.outbox.clear()
    now = max(r.submitted_at for r in requests) + timedelta(minutes=5)

    sent = at_once(lambda: digests.send_due_digests(now=now), runs=4)

    # The admin and the extra address, once; the requester, of the outcomes past the first three.
    assert len(sent) == 4 and sum(sent) == 3
    [outcomes_digest] = [
        m for m in to(REQUESTER) if m.subject.startswith("[Response Portal] Finished")
    ]
    assert outcomes_digest.subject.endswith(": 9 of your requests in Acme Corporation")
    [digest] = auto_announcements(ADMIN)
    assert digest.subject.endswith(": 12 requests in Acme Corporation")
    assert all(link(r) in digest.body for r in ActionRequest.objects.all())
    assert not Notification.objects.filter(
        kind=notifications.AUTO_APPROVED, email_sent_at__isnull=True
    ).exists()


# The setting


def settings_url():
    return reverse("approval_settings", args=["acme"])


def test_the_default_is_five_minutes_and_the_page_shows_it(admin, acme):
    page = client_for(admin).get(settings_url()).content.decode()
    assert 'name="digest_minutes"' in page
    assert re.search(r'name="digest_minutes"[^>]*value="5"', page)
    assert "Announce automatic approvals every (minutes)" in page


def test_an_admin_sets_the_interval_and_it_is_audited(admin, acme):
    response = client_for(admin).post(settings_url(), form_data(acme, digest_minutes="15"))
    assert response.status_code == 302
    assert ApprovalSettings.objects.get(organization=acme).digest_minutes == 15
    change = AuditEvent.objects.get(verb="settings.changed").data
    assert change["digest_minutes"] == {"before": 5, "after": 15}


def test_zero_means_at_once_and_a_form_without_the_field_keeps_it(admin, acme):
    client = client_for(admin)
    client.post(settings_url(), form_data(acme, digest_minutes=" 0 "))
    assert ApprovalSettings.objects.get(organization=acme).digest_minutes == 0
    client.post(settings_url(), form_data(acme, pending_lifetime_hours=48))
    saved = ApprovalSettings.objects.get(organization=acme)
    assert (saved.digest_minutes, saved.pending_lifetime_hours) == (0, 48)


@pytest.mark.parametrize(
    "value,message",
    [
        ("-1", "Expected 0 (each at once) or more minutes."),
        ("five", "Enter a whole number of minutes, or 0 to announce each at once."),
        ("1\u200b5", "Enter a whole number of minutes, or 0 to announce each at once."),
        ("15\x00", "Enter a whole number of minutes, or 0 to announce each at once."),
        ("2.5", "Enter a whole number of minutes, or 0 to announce each at once."),
        ("9" * 5000, "Enter a whole number of minutes, or 0 to announce each at once."),
        ("1441", "Expected at most 1440 minutes (a day)."),
    ],
    ids=["negative", "word", "invisible", "nul", "fraction", "huge", "past-a-day"],
)
def test_a_bad_interval_is_refused_and_nothing_changes(admin, acme, value, message):
    response = client_for(admin).post(settings_url(), form_data(acme, digest_minutes=value))
    assert response.status_code == 200
    errors = response.context["form"].errors["digest_minutes"]
    assert any(message in error for error in errors), errors
    assert not ApprovalSettings.objects.filter(organization=acme).exists()
    assert not AuditEvent.objects.filter(verb="settings.changed").exists()


@pytest.mark.parametrize("who", ["operator", "auditor"])
def test_only_an_admin_changes_the_interval(cast, acme, who):
    response = client_for(cast[who]).post(settings_url(), form_data(acme, digest_minutes="30"))
    assert response.status_code == 403
    assert not ApprovalSettings.objects.filter(organization=acme).exists()


def test_an_outsider_gets_404(outsider, acme):
    response = client_for(outsider).post(settings_url(), form_data(acme, digest_minutes="30"))
    assert response.status_code == 404

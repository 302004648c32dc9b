"""Reminders: a request still pending after the organization's remind-after time is announced
again to its admins and extra addresses, once; and once more when a quarter of its lifetime is
left. With a frozen clock, through the same outbox, e-mail and webhook as the pending e-mail."""

import json
import re
from datetime import UTC, datetime, timedelta
from io import StringIO
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from approvals import email_links, notifications, services
from approvals.models import ActionRequest, ApprovalSettings, Notification, Reminder
from approvals.reminders import send_due_reminders
from audit.models import AuditEvent

from .approvals_helpers import at_once, submit
from .conftest import client_for
from .test_approval_settings import form_data
from .test_notification_webhook import Receiver, receiver, use_webhook  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db

LINK = re.compile(r"^(Approve|Reject): +(\S+)$", re.M)
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


class Clock:
    """What `timezone.now()` answers in these tests; moved forward by the test."""

    def __init__(self, moment: datetime):
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment

    def set(self, moment: datetime) -> datetime:
        self.moment = moment
        return moment


@pytest.fixture
def clock(monkeypatch):
    frozen = Clock(START)
    monkeypatch.setattr(timezone, "now", frozen)
    return frozen


@pytest.fixture(autouse=True)
def _portal_url(settings):
    settings.PORTAL_URL = "https://portal.example.net"


@pytest.fixture
def waiting(clock, acme, operator, admin, django_capture_on_commit_callbacks):
    """A request submitted at START, pending for 72 hours; its pending e-mail already sent."""
    with django_capture_on_commit_callbacks(execute=True):
        action_request = submit(acme, operator, endpoints=["ws-1.acme.test", "10.0.0.7"])
    mail.outbox.clear()
    return action_request


def run_at(clock, moment, capture) -> int:
    clock.set(moment)
    with capture(execute=True):
        return send_due_reminders()


def reminder_events(action_request=None):
    events = AuditEvent.objects.filter(verb="request.reminded")
    if action_request is not None:
        events = events.filter(request=action_request)
    return list(events.order_by("sequence"))


def test_the_first_reminder_comes_after_thirty_minutes_by_default(
    clock, waiting, admin, django_capture_on_commit_callbacks
):
    assert ApprovalSettings.for_organization(waiting.organization).remind_after_minutes == 30
    before = START + timedelta(minutes=29, seconds=59)
    assert run_at(clock, before, django_capture_on_commit_callbacks) == 0
    assert mail.outbox == [] and reminder_events() == []

    due = START + timedelta(minutes=30)
    assert run_at(clock, due, django_capture_on_commit_callbacks) == 1
    (message,) = mail.outbox
    assert message.to == [admin.email]
    assert message.subject == (
        "[Response Portal] Reminder, approval still needed: Isolate Endpoint in Acme Corporation"
    )
    waiting.refresh_from_db()
    assert waiting.last_reminder == Reminder.STILL_WAITING
    assert waiting.last_reminded_at == due
    (event,) = reminder_events(waiting)
    assert event.timestamp == due
    assert event.actor is None and event.source == "system"
    assert event.data == {
        "reminder": "reminder",
        "remind_after_minutes": 30,
        "expires_at": (START + timedelta(hours=72)).isoformat(),
    }


def test_the_first_reminder_is_sent_once(clock, waiting, django_capture_on_commit_callbacks):
    run_at(clock, START + timedelta(minutes=30), django_capture_on_commit_callbacks)
    for minutes in (30, 31, 60, 600, 24 * 60):
        assert (
            run_at(clock, START + timedelta(minutes=minutes), django_capture_on_commit_callbacks)
            == 0
        )
    assert len(mail.outbox) == 1
    assert len(reminder_events()) == 1


def test_a_last_reminder_comes_when_a_quarter_of_the_lifetime_is_left(
    clock, waiting, admin, django_capture_on_commit_callbacks
):
    run_at(clock, START + timedelta(minutes=30), django_capture_on_commit_callbacks)
    mail.outbox.clear()
    # 72 hours of lifetime: the last quarter starts 54 hours after the submission.
    quarter_left = START + timedelta(hours=54)
    assert (
        run_at(clock, quarter_left - timedelta(seconds=1), django_capture_on_commit_callbacks) == 0
    )
    assert run_at(clock, quarter_left, django_capture_on_commit_callbacks) == 1
    (message,) = mail.outbox
    assert message.subject == (
        "[Response Portal] Expires soon, approval still needed: Isolate Endpoint in "
        "Acme Corporation"
    )
    assert "less than a quarter of its waiting time is left" in message.body
    assert "2026-11-05 09:00 UTC" in message.body  # the expiry: 72 hours after 2 Nov 09:00
    waiting.refresh_from_db()
    assert waiting.last_reminder == Reminder.CLOSE_TO_EXPIRY
    assert [event.data["reminder"] for event in reminder_events(waiting)] == [
        "reminder",
        "close_to_expiry",
    ]
    # Nothing more, up to the expiry.
    for hours in (54.5, 60, 71.99):
        assert (
            run_at(clock, START + timedelta(hours=hours), django_capture_on_commit_callbacks) == 0
        )
    assert len(mail.outbox) == 1


def test_when_both_are_due_at_once_only_the_last_is_sent(
    clock, waiting, django_capture_on_commit_callbacks
):
    # Beat was down from the submission until the last quarter had begun.
    assert run_at(clock, START + timedelta(hours=60), django_capture_on_commit_callbacks) == 1
    (message,) = mail.outbox
    assert message.subject.startswith("[Response Portal] Expires soon")
    assert [event.data["reminder"] for event in reminder_events(waiting)] == ["close_to_expiry"]


def test_the_reminder_follows_the_organizations_setting(
    clock, acme, operator, admin, django_capture_on_commit_callbacks
):
    ApprovalSettings.objects.create(organization=acme, remind_after_minutes=90)
    with django_capture_on_commit_callbacks(execute=True):
        submit(acme, operator)
    mail.outbox.clear()
    assert run_at(clock, START + timedelta(minutes=89), django_capture_on_commit_callbacks) == 0
    assert run_at(clock, START + timedelta(minutes=90), django_capture_on_commit_callbacks) == 1


def test_the_last_quarter_follows_the_lifetime_fixed_at_submission(
    clock, acme, operator, admin, django_capture_on_commit_callbacks
):
    settings = ApprovalSettings.objects.create(organization=acme, pending_lifetime_hours=2)
    with django_capture_on_commit_callbacks(execute=True):
        action_request = submit(acme, operator)
    # A later change of the lifetime changes nothing for a request already waiting.
    settings.pending_lifetime_hours = 100
    settings.save()
    mail.outbox.clear()
    run_at(clock, START + timedelta(minutes=30), django_capture_on_commit_callbacks)
    assert run_at(clock, START + timedelta(minutes=89), django_capture_on_commit_callbacks) == 0
    assert run_at(clock, START + timedelta(minutes=90), django_capture_on_commit_callbacks) == 1
    action_request.refresh_from_db()
    assert action_request.last_reminder == Reminder.CLOSE_TO_EXPIRY


def test_zero_minutes_sends_no_reminders(
    clock, acme, operator, admin, django_capture_on_commit_callbacks
):
    ApprovalSettings.objects.create(organization=acme, remind_after_minutes=0)
    with django_capture_on_commit_callbacks(execute=True):
        submit(acme, operator)
    mail.outbox.clear()
    for hours in (1, 54, 71):
        assert (
            run_at(clock, START + timedelta(hours=hours), django_capture_on_commit_callbacks) == 0
        )
    assert mail.outbox == [] and reminder_events() == []


@pytest.mark.parametrize(
    "ending",
    [
        lambda request, admin, operator: services.approve_request(request.pk, actor=admin),
        lambda request, admin, operator: services.reject_request(
            request.pk, actor=admin, reason="Not this host"
        ),
        lambda request, admin, operator: services.cancel_request(request.pk, actor=operator),
    ],
    ids=["approved", "rejected", "cancelled"],
)
def test_a_decided_request_gets_no_reminder(
    clock, waiting, admin, operator, ending, django_capture_on_commit_callbacks
):
    clock.set(START + timedelta(minutes=10))
    with django_capture_on_commit_callbacks(execute=True):
        ending(waiting, admin, operator)
    mail.outbox.clear()
    for hours in (0.5, 1, 54, 60):
        assert (
            run_at(clock, START + timedelta(hours=hours), django_capture_on_commit_callbacks) == 0
        )
    assert mail.outbox == [] and reminder_events() == []


def test_an_expired_request_gets_no_reminder(clock, waiting, django_capture_on_commit_callbacks):
    # Nobody ran the jobs while it waited: at its expiry, it is too late for any reminder.
    assert run_at(clock, START + timedelta(hours=72), django_capture_on_commit_callbacks) == 0
    services.expire_overdue_requests()
    assert run_at(clock, START + timedelta(hours=73), django_capture_on_commit_callbacks) == 0
    assert reminder_events() == []


def test_a_reminder_whose_request_was_decided_before_delivery_is_not_sent(
    clock, waiting, admin, django_capture_on_commit_callbacks
):
    clock.set(START + timedelta(minutes=30))
    with django_capture_on_commit_callbacks(execute=False):  # the worker is late
        assert send_due_reminders() == 1
    with django_capture_on_commit_callbacks(execute=False):
        services.approve_request(waiting.pk, actor=admin)
    clock.set(START + timedelta(minutes=40))
    notifications.deliver_due()
    reminder = Notification.objects.get(request=waiting, kind=notifications.REMINDER)
    assert reminder.sent_at is not None  # done with: nothing left to send
    assert not [m for m in mail.outbox if "Reminder" in m.subject]


def test_two_runs_in_a_row_send_each_reminder_once(
    clock, waiting, acme, operator, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        other = submit(acme, operator, endpoints=["ws-2.acme.test"])
    mail.outbox.clear()
    clock.set(START + timedelta(minutes=45))
    with django_capture_on_commit_callbacks(execute=True):
        assert send_due_reminders() == 2
        assert send_due_reminders() == 0
    assert len(mail.outbox) == 2
    assert {event.request_id for event in reminder_events()} == {waiting.pk, other.pk}


def test_the_reminder_carries_each_admins_own_approve_and_reject_links(
    clock, waiting, admin, acme, django_capture_on_commit_callbacks
):
    settings = ApprovalSettings.for_organization(acme)
    settings.notify_emails = ["soc@acme.example"]
    settings.save()
    run_at(clock, START + timedelta(minutes=30), django_capture_on_commit_callbacks)
    (to_admin,) = [m for m in mail.outbox if m.to == [admin.email]]
    (to_soc,) = [m for m in mail.outbox if m.to == ["soc@acme.example"]]
    body = to_admin.body
    assert body.startswith("Reminder: a response action has waited for your decision in Acme")
    assert "since 2026-11-02 09:00 UTC" in body and "by 2026-11-05 09:00 UTC" in body
    assert "ws-1.acme.test" in body and "10.0.0.7" in body
    links = dict(LINK.findall(body))
    assert set(links) == {"Approve", "Reject"}
    prefix = f"/orgs/acme/requests/{waiting.uuid}/email-decision/"
    for decision, url in links.items():
        path = urlsplit(url).path
        assert url.startswith("https://portal.example.net/") and path.startswith(prefix)
        link = email_links.read(path.removeprefix(prefix).rstrip("/"))
        assert (link.request_uuid, link.admin_id, link.decision) == (
            waiting.uuid,
            admin.pk,
            decision.lower(),
        )
        assert link.digest == email_links.digest(waiting)
    html = to_admin.alternatives[0][0]
    assert "<strong>Reminder:</strong>" in html and links["Approve"].replace("&", "&amp;") in html
    # An extra address is nobody's account: the request page, no decision links.
    assert "email-decision" not in to_soc.body
    assert f"/orgs/acme/requests/{waiting.uuid}/" in to_soc.body


def test_the_reminders_link_decides_the_request(
    clock, waiting, admin, django_capture_on_commit_callbacks
):
    run_at(clock, START + timedelta(minutes=30), django_capture_on_commit_callbacks)
    (message,) = mail.outbox
    path = urlsplit(dict(LINK.findall(message.body))["Approve"]).path
    client = client_for(admin)
    assert client.get(path).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        client.post(path, {"comment": ""})
    waiting.refresh_from_db()
    assert waiting.decided_by == admin
    assert AuditEvent.objects.get(request=waiting, verb="request.approved").source == "email"


def test_the_reminders_go_to_the_webhook(
    clock,
    acme,
    operator,
    receiver,  # noqa: F811 (the fixture imported above)
    django_capture_on_commit_callbacks,
):
    use_webhook(acme, receiver)
    with django_capture_on_commit_callbacks(execute=True):
        action_request = submit(acme, operator)
    Receiver.calls.clear()
    run_at(clock, START + timedelta(minutes=30), django_capture_on_commit_callbacks)
    run_at(clock, START + timedelta(hours=54), django_capture_on_commit_callbacks)
    assert [headers["X-Response-Portal-Event"] for headers, _ in Receiver.calls] == [
        "reminder",
        "close_to_expiry",
    ]
    payload = json.loads(Receiver.calls[1][1])
    assert payload["event"] == "close_to_expiry"
    assert payload["subject"].startswith("Expires soon, approval still needed: Isolate Endpoint")
    assert payload["request"]["uuid"] == str(action_request.uuid)
    assert payload["request"]["expires_at"] == "2026-11-05T09:00:00+00:00"


def test_the_command_sends_what_is_due(clock, waiting, django_capture_on_commit_callbacks):
    clock.set(START + timedelta(minutes=31))
    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("send_reminders", stdout=out)
    assert out.getvalue().strip() == "Sent 1 reminder."
    assert len(mail.outbox) == 1


# The close-to-expiry mark


def test_the_rule_marks_the_last_quarter_of_the_lifetime(clock, waiting):
    expires = START + timedelta(hours=72)
    assert not waiting.is_close_to_expiry(START + timedelta(hours=53, minutes=59))
    assert waiting.is_close_to_expiry(START + timedelta(hours=54))
    assert waiting.is_close_to_expiry(expires - timedelta(seconds=1))
    assert not waiting.is_close_to_expiry(expires)  # overdue: expired, no longer close


def test_the_queue_and_the_dashboard_mark_requests_close_to_expiry(
    clock, acme, operator, admin, django_capture_on_commit_callbacks
):
    close = submit(acme, operator, endpoints=["close-1.acme.test"])
    clock.set(START + timedelta(hours=30))
    far = submit(acme, operator, endpoints=["far-1.acme.test"])
    clock.set(START + timedelta(hours=60))  # close: 12 hours of 72 left; far: 42 hours left
    client = client_for(admin)
    queue = client.get(reverse("queue", args=["acme"])).content.decode()
    rows = {
        uuid: row for uuid, row in re.findall(r'value="([0-9a-f-]{36})"(.*?)</tr>', queue, re.S)
    }
    assert "Expires soon" in rows[str(close.uuid)]
    assert "Expires soon" not in rows[str(far.uuid)]
    dashboard = client.get(reverse("org_dashboard", args=["acme"])).content.decode()
    section = dashboard.split('id="expiring-heading"')[1].split("</section>")[0]
    assert f"/orgs/acme/requests/{close.uuid}/" in section
    assert f"/orgs/acme/requests/{far.uuid}/" not in section
    assert "Expires soon" in section
    assert "1 request close to expiry" in dashboard


# The setting


def settings_url():
    return reverse("approval_settings", args=["acme"])


def test_an_admin_sets_the_reminder_time_and_it_is_audited(admin, acme):
    response = client_for(admin).post(settings_url(), form_data(acme, remind_after_minutes="45"))
    assert response.status_code == 302
    assert ApprovalSettings.objects.get(organization=acme).remind_after_minutes == 45
    change = AuditEvent.objects.get(verb="settings.changed").data
    assert change["remind_after_minutes"] == {"before": 30, "after": 45}


def test_the_settings_page_shows_the_reminder_time(admin, acme):
    page = client_for(admin).get(settings_url()).content.decode()
    assert 'name="remind_after_minutes"' in page and 'value="30"' in page
    assert "Remind admins after (minutes)" in page


def test_zero_turns_reminders_off_and_a_form_without_the_field_keeps_it(admin, acme):
    client = client_for(admin)
    client.post(settings_url(), form_data(acme, remind_after_minutes="0"))
    assert ApprovalSettings.objects.get(organization=acme).remind_after_minutes == 0
    client.post(settings_url(), form_data(acme, pending_lifetime_hours=48))
    saved = ApprovalSettings.objects.get(organization=acme)
    assert (saved.remind_after_minutes, saved.pending_lifetime_hours) == (0, 48)


def test_another_spelling_of_a_number_is_the_same_number(admin, acme):
    client_for(admin).post(settings_url(), form_data(acme, remind_after_minutes=" 45 "))
    assert ApprovalSettings.objects.get(organization=acme).remind_after_minutes == 45


@pytest.mark.parametrize(
    "value,message",
    [
        ("-1", "Expected 0 (no reminders) or more minutes."),
        ("abc", "Enter a whole number of minutes, or 0 for no reminders."),
        ("4\u200b5", "Enter a whole number of minutes, or 0 for no reminders."),
        ("45\x00", "Enter a whole number of minutes, or 0 for no reminders."),
        ("1.5", "Enter a whole number of minutes, or 0 for no reminders."),
        ("9" * 5000, "Enter a whole number of minutes, or 0 for no reminders."),
        ("32401", "Expected at most 32400 minutes."),
        # 72 hours: the last quarter starts after 54 hours (3240 minutes).
        ("3240", "Expected at most 3239 minutes, or 0 for no reminders."),
    ],
    ids=["negative", "word", "invisible", "nul", "fraction", "huge", "too-long", "last-quarter"],
)
def test_a_bad_reminder_time_is_refused_and_nothing_changes(admin, acme, value, message):
    response = client_for(admin).post(settings_url(), form_data(acme, remind_after_minutes=value))
    assert response.status_code == 200
    errors = response.context["form"].errors["remind_after_minutes"]
    assert any(message in error for error in errors), errors
    assert not ApprovalSettings.objects.filter(organization=acme).exists()
    assert not AuditEvent.objects.filter(verb="settings.changed").exists()


def test_a_shorter_lifetime_that_the_reminder_time_no_longer_fits_is_refused(admin, acme):
    response = client_for(admin).post(
        settings_url(), form_data(acme, remind_after_minutes="50", pending_lifetime_hours="1")
    )
    errors = response.context["form"].errors["remind_after_minutes"]
    assert errors == [
        "A reminder after 50 minutes comes too late for requests that expire after 1 hours: "
        "the last reminder goes when a quarter of that time is left. Expected at most 44 "
        "minutes, or 0 for no reminders."
    ]
    assert not ApprovalSettings.objects.filter(organization=acme).exists()
    client_for(admin).post(
        settings_url(), form_data(acme, remind_after_minutes="44", pending_lifetime_hours="1")
    )
    assert ApprovalSettings.objects.get(organization=acme).remind_after_minutes == 44


# Two beat ticks at once (PostgreSQL)


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_send_each_reminder_once(requires_postgresql, acme, operator, admin):
    requests = [submit(acme, operator, endpoints=[f"ws-{n}.acme.test"]) for n in range(12)]
    submitted = max(r.submitted_at for r in requests)
    mail.outbox.clear()
    now = submitted + timedelta(minutes=31)

    sent = at_once(lambda: send_due_reminders(now=now), runs=4)

    assert len(sent) == 4 and sum(sent) == len(requests)
    for action_request in requests:
        assert len(reminder_events(action_request)) == 1
        assert (
            Notification.objects.filter(request=action_request, kind=notifications.REMINDER).count()
            == 1
        )
    assert set(ActionRequest.objects.values_list("last_reminder", flat=True)) == {
        Reminder.STILL_WAITING
    }
    reminders = [m for m in mail.outbox if m.subject.startswith("[Response Portal] Reminder")]
    assert len(reminders) == len(requests)


def test_an_admin_who_already_approved_gets_no_links_in_the_reminder(
    clock, acme, operator, admin, django_capture_on_commit_callbacks
):
    from responseportal.models import Role

    from .factories import MembershipFactory, UserFactory

    second = UserFactory(username="acme-admin-2")
    MembershipFactory(user=second, organization=acme, role=Role.ADMIN)
    ApprovalSettings.objects.create(organization=acme, approvals_needed={"isolate_endpoint": 2})
    with django_capture_on_commit_callbacks(execute=True):
        action_request = submit(acme, operator)
        services.approve_request(action_request.pk, actor=admin)
    mail.outbox.clear()
    run_at(clock, START + timedelta(minutes=30), django_capture_on_commit_callbacks)
    (to_first,) = [m for m in mail.outbox if m.to == [admin.email]]
    (to_second,) = [m for m in mail.outbox if m.to == [second.email]]
    assert LINK.findall(to_first.body) == []
    assert {word for word, _ in LINK.findall(to_second.body)} == {"Approve", "Reject"}

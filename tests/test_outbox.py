"""The notification outbox: written with the change, delivered at least once, never twice at once.

In-process (tasks run eagerly): a broker that refuses every message stands for the outage. The
real worker against a broker that is down is in `test_celery_worker.py`.
"""

import json
import threading
import time
from datetime import timedelta
from io import StringIO

import pytest
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.core.management import call_command
from django.db import connection, transaction
from django.test import TestCase
from django.utils import timezone

from actions.models import ResponseAction
from actions.sync import sync_catalog
from approvals import notifications, services
from approvals.execution import steps as execution
from approvals.execution import tasks
from approvals.models import ApprovalSettings, Notification, RequestStatus

from .approvals_helpers import submit
from .test_notification_webhook import Receiver, use_webhook
from .test_notification_webhook import receiver as receiver  # a fixture

pytestmark = pytest.mark.django_db

ACTION = "Isolate Endpoint"
ORGANIZATION = "Acme Corporation"
ADMIN = "acme-admin@example.com"
EXTRA = "soc@acme.example"
REQUESTER = "operator@example.com"


def subject(text: str) -> str:
    return f"[Response Portal] {text}: {ACTION} in {ORGANIZATION}"


class FailingBackend(BaseEmailBackend):
    error = ConnectionRefusedError("[Errno 111] Connection refused (SMTP)")

    def send_messages(self, messages):
        raise FailingBackend.error


class Broker:
    """Stands for Redis: `up` or not; while down, every message is refused as Redis would."""

    def __init__(self, monkeypatch):
        self.up = True
        for task in (tasks.deliver_notification, tasks.execute_request):
            monkeypatch.setattr(task, "delay", self._delay(task.delay))

    def _delay(self, delay):
        def send(*args, **kwargs):
            if not self.up:
                raise ConnectionRefusedError("Error 111 connecting to 127.0.0.1:6379.")
            return delay(*args, **kwargs)

        return send


@pytest.fixture
def broker(monkeypatch):
    return Broker(monkeypatch)


def command(*args) -> str:
    out = StringIO()
    call_command("deliver_notifications", *args, stdout=out)
    return out.getvalue().strip()


def delivered() -> list[tuple[str, str]]:
    return sorted((message.to[0], message.subject) for message in mail.outbox)


def committed(function, *args, **kwargs):
    """Run a change and, as its commit would, what waits for the commit."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        return function(*args, **kwargs)


def make_due(**changes) -> None:
    """As if the workers' head start (or the wait after a failure) were over."""
    Notification.objects.filter(sent_at__isnull=True).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1), **changes
    )


def test_a_notification_is_written_with_its_change_and_gone_with_its_rollback(
    acme, operator, admin, django_capture_on_commit_callbacks
):
    request = submit(acme, operator)
    mail.outbox.clear()

    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(ZeroDivisionError),
        transaction.atomic(),
    ):
        services.reject_request(request.pk, actor=admin, reason="No")
        assert request.notifications.filter(kind="rejected").exists()
        1 / 0  # noqa: B018 (the change fails after the notification was written)

    assert not request.notifications.filter(kind="rejected").exists()
    assert mail.outbox == []
    request.refresh_from_db()
    assert request.status == RequestStatus.PENDING


def test_what_is_due_is_written_down(acme, operator, admin, receiver):
    request = submit(acme, operator)
    pending = request.notifications.get(kind="pending")
    assert (pending.email_due, pending.webhook_due) == (True, False)
    assert pending.next_attempt_at - pending.created_at == timedelta(seconds=30)

    use_webhook(acme, receiver)
    operator.email = ""
    operator.save()
    with transaction.atomic():
        rejected = notifications.schedule(notifications.REJECTED, request.pk)
    assert (rejected.email_due, rejected.webhook_due) == (False, True)


def test_nobody_to_tell_writes_nothing(acme, operator):
    operator.email = ""
    operator.save()
    request = submit(acme, operator)  # no admin in acme, no extra address, no webhook

    assert notifications.schedule(notifications.APPROVED, request.pk) is None
    assert not Notification.objects.exists()


def test_with_the_broker_down_every_notification_waits_and_is_delivered_once_it_is_back(
    acme, operator, admin, broker, receiver, django_capture_on_commit_callbacks, caplog
):
    settings = ApprovalSettings.for_organization(acme)
    settings.notify_emails = [EXTRA]
    settings.save()
    use_webhook(acme, receiver)
    broker.up = False

    with django_capture_on_commit_callbacks(execute=True):
        first, second, third = (submit(acme, operator, endpoints=[f"ws-{n}"]) for n in range(3))
    with django_capture_on_commit_callbacks(execute=True):
        services.approve_request(first.pk, actor=admin)
    with django_capture_on_commit_callbacks(execute=True):
        services.approve_request(second.pk, actor=admin)
    with django_capture_on_commit_callbacks(execute=True):
        services.reject_request(third.pk, actor=admin, reason="Not this one")

    # Saved, and nothing went out: the broker took neither the e-mails nor the requests.
    assert mail.outbox == [] and Receiver.calls == []
    assert Notification.objects.filter(sent_at__isnull=True, attempts=0).count() == 6
    assert "could not be queued; it stays in the outbox" in caplog.text
    for request in (first, second):
        request.refresh_from_db()
        assert request.status == RequestStatus.QUEUED

    broker.up = True
    # The workers get a head start of 30 s on what was handed to them; then beat takes over.
    assert command() == "Delivered 0 notifications; 6 still unsent."
    make_due()
    assert tasks.deliver_notifications.apply().get() == 6
    with django_capture_on_commit_callbacks(execute=True):
        assert execution.redispatch_stranded(waited=timedelta(0)) == 2

    expected = sorted(
        [(ADMIN, subject("Approval needed")), (EXTRA, subject("Approval needed"))] * 3
        + [(REQUESTER, subject("Approved"))] * 2
        + [(REQUESTER, subject("Rejected"))]
        + [(REQUESTER, subject("Successful"))] * 2
    )
    assert delivered() == expected
    events = sorted(json.loads(body)["event"] for _, body in Receiver.calls)
    assert events == sorted(["pending"] * 3 + ["approved"] * 2 + ["rejected"] + ["finished"] * 2)
    assert not Notification.objects.filter(sent_at__isnull=True).exists()
    assert set(Notification.objects.values_list("attempts", flat=True)) == {1}

    # Delivered once: later runs, even of everything, send nothing again.
    assert command("--all") == "Delivered 0 notifications; 0 still unsent."
    assert len(mail.outbox) == len(expected) and len(Receiver.calls) == 8


def test_only_the_part_that_failed_is_sent_again(acme, operator, admin, receiver, settings, caplog):
    use_webhook(acme, receiver)
    settings.EMAIL_BACKEND = "tests.test_outbox.FailingBackend"
    committed(submit, acme, operator)

    notification = Notification.objects.get(kind="pending")
    assert notification.sent_at is None
    assert notification.webhook_sent_at is not None and notification.email_sent_at is None
    assert notification.attempts == 1
    assert notification.last_error == (
        "e-mail: ConnectionRefusedError: [Errno 111] Connection refused (SMTP)"
    )
    wait = notification.next_attempt_at - timezone.now()
    assert timedelta(seconds=25) < wait <= timedelta(seconds=30)
    assert "The pending e-mail about request" in caplog.text and "(attempt 1 of 12)" in caplog.text

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert notifications.deliver_due() == 0  # not due yet
    make_due()
    assert notifications.deliver_due() == 1

    notification.refresh_from_db()
    assert notification.sent_at is not None and notification.last_error == ""
    assert notification.attempts == 2
    assert delivered() == [(ADMIN, subject("Approval needed"))]
    assert len(Receiver.calls) == 1  # the webhook had its notice the first time


@pytest.mark.parametrize(
    "attempts,minutes",
    [(1, 0.5), (2, 1), (3, 2), (4, 4), (5, 8), (6, 16), (7, 32), (8, 60), (11, 60)],
)
def test_the_wait_between_attempts_doubles_up_to_an_hour(attempts, minutes):
    assert notifications.wait_after(attempts) == timedelta(minutes=minutes)


def test_after_twelve_failures_it_waits_for_an_operator(acme, operator, admin, settings, caplog):
    settings.EMAIL_BACKEND = "tests.test_outbox.FailingBackend"
    request = committed(submit, acme, operator)
    for _ in range(11):
        make_due()
        assert notifications.deliver_due() == 0

    notification = request.notifications.get()
    assert notification.attempts == 12 and notification.next_attempt_at is None
    assert "Gave up on the pending notification" in caplog.text
    in_a_day = timezone.now() + timedelta(days=1)
    assert notifications.deliver_due(now=in_a_day) == 0

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert command("--all") == "Delivered 1 notification; 0 still unsent."
    assert delivered() == [(ADMIN, subject("Approval needed"))]


def test_a_webhook_that_refuses_is_told_once(acme, operator, receiver):
    use_webhook(acme, receiver)
    Receiver.answer = 410
    request = committed(submit, acme, operator)

    notification = request.notifications.get()
    assert notification.sent_at is not None
    assert notification.last_error == "webhook: refused with HTTP 410; not sent again."
    assert notifications.deliver(notification.pk) is False
    assert command("--all") == "Delivered 0 notifications; 0 still unsent."
    assert len(Receiver.calls) == 1


@pytest.mark.parametrize(
    "message,stored",
    [
        ("\x00SMTP\x00", "e-mail: OSError: \\x00SMTP\\x00"),
        ("bad \udcff byte", "e-mail: OSError: bad \\udcff byte"),
        ("\u202eLTR\u200b", "e-mail: OSError: \u202eLTR\u200b"),
        ("x" * 1_000_000, "e-mail: OSError: " + "x" * 1982 + "…"),
    ],
    ids=["nul", "lone-surrogate", "bidi-and-zero-width", "a-megabyte"],
)
def test_any_error_message_is_kept_storable_and_bounded(
    acme, operator, admin, settings, message, stored
):
    FailingBackend.error = OSError(message)
    settings.EMAIL_BACKEND = "tests.test_outbox.FailingBackend"
    try:
        request = committed(submit, acme, operator)
    finally:
        FailingBackend.error = ConnectionRefusedError("[Errno 111] Connection refused (SMTP)")

    notification = request.notifications.get()
    assert notification.attempts == 1
    assert notification.last_error == stored
    assert len(notification.last_error) <= 2000


def test_one_notification_that_cannot_be_handled_never_stops_the_others(
    acme, operator, admin, broker, monkeypatch, caplog
):
    broker.up = False
    broken = committed(submit, acme, operator)
    committed(submit, acme, operator, endpoints=["ws-2"])
    broker.up = True
    make_due()
    original = notifications._attempt

    def attempt(notification):
        if notification.request_id == broken.pk:
            raise RuntimeError("the database went away")
        return original(notification)

    monkeypatch.setattr(notifications, "_attempt", attempt)
    assert notifications.deliver_due() == 1
    assert delivered() == [(ADMIN, subject("Approval needed"))]
    assert f"Notification {broken.notifications.get().pk} could not be delivered" in caplog.text


def test_beat_and_a_command_deliver_the_outbox(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["deliver-notifications"]
    assert (
        entry["task"] == tasks.deliver_notifications.name == "approvals.tasks.deliver_notifications"
    )
    assert entry["schedule"] == 60.0


class SlowBackend(BaseEmailBackend):
    """A mail server that takes its time, counting what it was given (from any thread)."""

    sent: list = []
    lock = threading.Lock()

    def send_messages(self, messages):
        time.sleep(0.3)
        with SlowBackend.lock:
            SlowBackend.sent.extend((m.to[0], m.subject) for m in messages)
        return len(messages)


@pytest.fixture
def catalog(requires_postgresql):
    # A transactional test's flush empties the catalog its data migration filled.
    if not ResponseAction.objects.exists():
        sync_catalog()
    yield
    sync_catalog()


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_two_workers_never_deliver_one_notification_twice(
    catalog, acme, operator, admin, broker, settings
):
    broker.up = False
    requests = [submit(acme, operator, endpoints=[f"ws-{n}"]) for n in range(6)]
    broker.up = True
    make_due()
    settings.EMAIL_BACKEND = "tests.test_outbox.SlowBackend"
    SlowBackend.sent = []
    start = threading.Barrier(4)
    counts: list[int] = []

    def worker(n: int) -> None:
        try:
            start.wait()
            if n < 2:  # two beat runs at once
                counts.append(notifications.deliver_due())
            else:  # and two workers given the same notification
                counts.append(int(notifications.deliver(requests[0].notifications.get().pk)))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(counts) == 4 and sum(counts) == 6
    assert sorted(SlowBackend.sent) == [(ADMIN, subject("Approval needed"))] * 6
    assert set(Notification.objects.values_list("attempts", flat=True)) == {1}
    assert not Notification.objects.filter(sent_at__isnull=True).exists()

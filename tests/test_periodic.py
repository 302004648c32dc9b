"""The periodic jobs: each a Celery beat entry and a management command doing the same work."""

from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.core import mail
from django.core.management import call_command
from django.utils import timezone

from approvals import services
from approvals.execution import steps as execution
from approvals.execution import tasks
from approvals.models import ActionRequest, RequestStatus
from responseportal.celery import app

from .approvals_helpers import submit

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _instant_executor(settings):
    settings.SIMULATED_EXECUTOR_DELAY = 0
    settings.RESPONSE_EXECUTOR = "simulated"


def command(name, *args):
    out = StringIO()
    call_command(name, *args, stdout=out)
    return out.getvalue().strip()


def test_beat_runs_each_job_every_minute():
    schedule = settings.CELERY_BEAT_SCHEDULE
    assert {entry["task"] for entry in schedule.values()} == {
        "approvals.tasks.expire_requests",
        "approvals.tasks.end_expired_sessions",
        "approvals.tasks.dispatch_stranded",
        "approvals.tasks.deliver_notifications",
        "approvals.tasks.send_digests",
        "approvals.tasks.announce_overdue_reviews",
        "approvals.tasks.send_reminders",
    }
    assert {entry["schedule"] for entry in schedule.values()} == {60.0}
    for entry in schedule.values():
        assert entry["task"] in app.tasks


def overdue(acme, operator):
    request = submit(acme, operator)
    ActionRequest.objects.filter(pk=request.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    return request


def test_expire_requests_expires_overdue_requests_and_tells_the_requester(
    acme, operator, django_capture_on_commit_callbacks
):
    request = overdue(acme, operator)
    waiting = submit(acme, operator, endpoints=["ws-9"])
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        assert command("expire_requests") == "Expired 1 pending request."

    request.refresh_from_db()
    waiting.refresh_from_db()
    assert request.status == RequestStatus.EXPIRED
    assert waiting.status == RequestStatus.PENDING
    assert request.events.filter(verb="request.expired", actor=None).count() == 1
    assert [m.to for m in mail.outbox] == [["operator@example.com"]]
    assert command("expire_requests") == "Expired 0 pending requests."


def test_the_expire_task_does_the_same(acme, operator):
    request = overdue(acme, operator)

    assert tasks.expire_requests.apply().get() == 1

    request.refresh_from_db()
    assert request.status == RequestStatus.EXPIRED


def active_shell(acme, operator, admin, endpoint):
    request = submit(
        acme,
        operator,
        key="start_remote_shell",
        endpoints=[endpoint],
        parameters={"endpoints": [endpoint], "reason": "Triage"},
    )
    services.approve_request(request.pk, actor=admin)
    execution.queue_request(request.pk)
    tasks.execute_request.apply(args=[request.pk])
    request.refresh_from_db()
    assert request.status == RequestStatus.SUCCESSFUL
    return request


def test_end_expired_sessions_ends_shells_past_their_validity(acme, operator, admin):
    past = active_shell(acme, operator, admin, "ws-1")
    current = active_shell(acme, operator, admin, "ws-2")
    ActionRequest.objects.filter(pk=past.pk).update(
        active_until=timezone.now() - timedelta(seconds=1)
    )

    assert command("end_expired_sessions") == "Ended 1 remote shell session."
    assert tasks.end_expired_sessions.apply().get() == 0

    past.refresh_from_db()
    current.refresh_from_db()
    assert past.ended_at is not None and current.ended_at is None
    assert past.events.filter(verb="remote_shell.expired").count() == 1


def test_dispatch_stranded_runs_a_request_whose_message_was_lost(
    acme, operator, admin, django_capture_on_commit_callbacks
):
    request = submit(acme, operator)
    services.approve_request(request.pk, actor=admin)
    execution.queue_request(request.pk)  # its message was lost: nothing ran it
    ActionRequest.objects.filter(pk=request.pk).update(
        queued_at=timezone.now() - timedelta(minutes=10)
    )

    with django_capture_on_commit_callbacks(execute=True):
        assert command("dispatch_stranded") == "Sent 1 stranded request again."

    request.refresh_from_db()
    assert request.status == RequestStatus.SUCCESSFUL
    verbs = list(request.events.order_by("id").values_list("verb", flat=True))
    assert verbs[-4:] == [
        "execution.queued",
        "execution.redispatched",
        "execution.started",
        "execution.succeeded",
    ]


def test_dispatch_stranded_takes_its_waits_as_options(
    acme, operator, admin, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr(execution, "send", sent.append)
    request = submit(acme, operator)
    services.approve_request(request.pk, actor=admin)
    execution.queue_request(request.pk)

    assert command("dispatch_stranded") == "Sent 0 stranded requests again."
    with django_capture_on_commit_callbacks(execute=True):
        assert command("dispatch_stranded", "--waited", "0") == "Sent 1 stranded request again."
    assert sent == [request.pk]


def test_the_dispatch_task_uses_the_settings(acme, operator, admin, settings, monkeypatch):
    sent = []
    monkeypatch.setattr(execution, "send", sent.append)
    request = submit(acme, operator)
    services.approve_request(request.pk, actor=admin)
    execution.queue_request(request.pk)

    assert tasks.dispatch_stranded.apply().get() == 0
    settings.EXECUTION_REDISPATCH_AFTER = 0
    assert tasks.dispatch_stranded.apply().get() == 1

"""`notification_emails_per_1000_auto_approvals`: the e-mails the outbox produces for a burst
of automatically approved requests, with the organization's digest interval (default 5 minutes).

In this process, in tenant-e2e, by an operator of its own (so that the outcome e-mails start
from a quiet interval): each request is submitted through the service layer, run by the
execution task in process, and its notifications delivered by the outbox's own functions, with
an e-mail backend that counts the messages. Every minute of the run, and once at its end, the
organization's digests are sent as beat sends them; then the count is scaled to 1,000 requests.
"""

import time
import uuid
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.mail.backends.base import BaseEmailBackend
from django.test.utils import override_settings
from django.utils import timezone

from approvals import digests, notifications
from approvals.execution import tasks
from approvals.models import ActionRequest, ApprovalMode, ApprovalSettings, Notification
from responseportal.celery import app
from responseportal.models import Membership, Role

from . import data
from .data import Plan, Scene

# Beat's period for the digests.
BEAT_S = 60


class CountingBackend(BaseEmailBackend):
    """Counts the messages the portal sends, by subject's kind; sends nothing."""

    sent: list = []

    def send_messages(self, messages):
        CountingBackend.sent.extend(messages)
        return len(messages)


def measure(scene: Scene, plan: Plan) -> dict:
    number = min(plan.e2e_requests, 1000)
    organization = scene.e2e
    interval = timedelta(minutes=ApprovalSettings.for_organization(organization).digest_minutes)
    operator = get_user_model().objects.create_user(
        f"bench-digest-{uuid.uuid4().hex[:8]}", email="digest-operator@corp.example"
    )
    Membership.objects.create(user=operator, organization=organization, role=Role.OPERATOR)
    with override_settings(EMAIL_BACKEND="benchmarks.notification_emails.CountingBackend"):
        # What earlier figures left waiting for this organization's digest is not this burst's.
        _send_digests(organization.pk, operator.pk, timezone.now() + interval)
        CountingBackend.sent = []
        ids, last_beat = [], time.monotonic()
        for index in range(number):
            spec = data.Spec((f"digest-{index:05d}.corp.example",), "Ransom note found")
            action_request = data.submit(organization, operator, spec)
            if action_request.approval_mode != ApprovalMode.AUTO:
                raise RuntimeError(f"{organization.slug} did not approve {data.ACTION} at once.")
            ids.append(action_request.pk)
            tasks.execute_request.apply(args=[action_request.pk])
            _deliver(ids[-1:])
            if time.monotonic() - last_beat >= BEAT_S:
                _send_digests(organization.pk, operator.pk, timezone.now() - interval)
                last_beat = time.monotonic()
        # The burst is over: the digests go out once their interval is.
        _send_digests(organization.pk, operator.pk, timezone.now())
        sent = list(CountingBackend.sent)
    admins = len(notifications.admin_addresses(ActionRequest.objects.get(pk=ids[0])))
    app.control.purge()  # the tasks queued for the worker; their work is done here
    kinds = {}
    for message in sent:
        kind = message.subject.removeprefix(notifications.SUBJECT_PREFIX).split(":")[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    return {
        "notification_emails_per_1000_auto_approvals": {
            "value": round(len(sent) * 1000 / number, 1),
            "requests": number,
            "emails": len(sent),
            "digest_minutes": int(interval.total_seconds() // 60),
            "admin_addresses": admins,
            "by_subject": kinds,
        }
    }


def _deliver(ids: list[int]) -> None:
    """What the worker does right after commit: deliver each notification at once."""
    for pk in Notification.objects.filter(request_id__in=ids, sent_at__isnull=True).values_list(
        "pk", flat=True
    ):
        notifications.deliver(pk)


def _send_digests(organization_id: int, requester_id: int, due_before) -> None:
    digests.send_digest(
        organization_id, notifications.AUTO_APPROVED, requester_id=None, due_before=due_before
    )
    digests.send_digest(
        organization_id, notifications.FINISHED, requester_id=requester_id, due_before=due_before
    )

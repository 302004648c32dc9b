"""`notification_emails_per_1000_auto_approvals`: the e-mails the outbox produces for a burst
of automatically approved requests, with the organization's digest interval (default 5 minutes).

In this process, in tenant-e2e, by an operator of its own (so that the outcome e-mails start
from a quiet interval): 1,000 requests, in the quick run too (the count of e-mails does not
grow in proportion to the requests, so a smaller burst scaled up would not be the figure).
Each request is submitted through the service layer; each `EXECUTION_BATCH_SIZE` of them are
run together, as a worker's execution task takes the queued requests it finds; their
notifications are delivered by the outbox's own functions, with an e-mail backend that counts
the messages. Every minute of the run, and once at its end, the organization's digests are sent
as beat sends them.
"""

import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail.backends.base import BaseEmailBackend
from django.test.utils import override_settings
from django.utils import timezone

from approvals import digests, notifications
from approvals.execution import steps as execution
from approvals.execution import tasks
from approvals.models import ActionRequest, ApprovalMode, ApprovalSettings, Notification
from responseportal.celery import app
from responseportal.models import Membership, Role

from . import data
from .data import Plan, Scene

# Beat's period for the digests.
BEAT_S = 60
REQUESTS = 1000


class CountingBackend(BaseEmailBackend):
    """Counts the messages the portal sends, by subject's kind; sends nothing."""

    sent: list = []

    def send_messages(self, messages):
        CountingBackend.sent.extend(messages)
        return len(messages)


def measure(scene: Scene, plan: Plan) -> dict:
    number = REQUESTS
    batch = settings.EXECUTION_BATCH_SIZE
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
        for start in range(0, number, batch):
            submitted = []
            for index in range(start, min(start + batch, number)):
                spec = data.Spec((f"digest-{index:05d}.corp.example",), "Ransom note found")
                action_request = data.submit(organization, operator, spec)
                if action_request.approval_mode != ApprovalMode.AUTO:
                    raise RuntimeError(
                        f"{organization.slug} did not approve {data.ACTION} at once."
                    )
                submitted.append(action_request.pk)
            _run(submitted, batch)
            _deliver(submitted)
            ids.extend(submitted)
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
            "execution_batch_size": batch,
            "requests": number,
            "emails": len(sent),
            "digest_minutes": int(interval.total_seconds() // 60),
            "admin_addresses": admins,
            "by_subject": kinds,
        }
    }


def _run(ids: list[int], batch: int) -> None:
    """What a worker's execution task does with the first of these queued requests: start it
    with the others queued (up to `batch`), run their jobs together and finish them."""
    left = set(ids)
    while left:
        jobs = execution.start_executions(
            min(left), runner=f"bench-{uuid.uuid4()}", batch_size=batch
        )
        if not jobs:
            raise RuntimeError(f"Request {min(left)} was not queued to run.")
        tasks.run_batch(jobs)
        left -= {job.request_id for job in jobs}


def _deliver(ids: list[int]) -> None:
    """What the workers do right after commit: deliver each notification handed to them (one
    waiting for a digest is not), and the digested ones' webhook notices in one batch."""
    unsent = Notification.objects.filter(request_id__in=ids, sent_at__isnull=True)
    for pk in unsent.filter(in_digest=False).values_list("pk", flat=True):
        notifications.deliver(pk)
    if unsent.filter(in_digest=True, webhook_due=True).exists():
        notifications.deliver_webhook_batch()


def _send_digests(organization_id: int, requester_id: int, due_before) -> None:
    digests.send_digest(
        organization_id, notifications.AUTO_APPROVED, requester_id=None, due_before=due_before
    )
    digests.send_digest(
        organization_id, notifications.FINISHED, requester_id=requester_id, due_before=due_before
    )

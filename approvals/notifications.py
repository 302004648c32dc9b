"""E-mail to the people a request concerns, sent by a task after the change has committed.

| kind | to | when |
|---|---|---|
| `pending` | the organization's admins and its extra addresses | a request waits for a decision |
| `auto_approved` | the same | a request was approved automatically |
| `approved`, `rejected` | the requester | an admin decided |
| `expired` | the requester | nobody decided in time |
| `finished` | the requester | execution ended, with each target's result |

A mail server that fails is logged; it never blocks or undoes the change. Links are plain URLs
of the request page (`PORTAL_URL` + path) and carry nothing secret: the page asks the reader to
sign in and shows the request only to members of its organization.
"""

import logging
from dataclasses import dataclass
from functools import partial

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse

from responseportal.models import Membership, Role

from .models import ActionRequest, ApprovalSettings

logger = logging.getLogger(__name__)

PENDING = "pending"
AUTO_APPROVED = "auto_approved"
APPROVED = "approved"
REJECTED = "rejected"
EXPIRED = "expired"
FINISHED = "finished"

SUBJECT_PREFIX = "[Response Portal] "
# Listed in an e-mail; the page shows them all.
SHOWN_TARGETS = 20


@dataclass(frozen=True)
class Kind:
    subject: str
    to_admins: bool


KINDS = {
    PENDING: Kind("Approval needed: {action} in {organization}", to_admins=True),
    AUTO_APPROVED: Kind("Approved automatically: {action} in {organization}", to_admins=True),
    APPROVED: Kind("Approved: {action} in {organization}", to_admins=False),
    REJECTED: Kind("Rejected: {action} in {organization}", to_admins=False),
    EXPIRED: Kind("Expired without a decision: {action} in {organization}", to_admins=False),
    FINISHED: Kind("{status}: {action} in {organization}", to_admins=False),
}


def schedule(kind: str, request_id: int) -> None:
    """Send the `kind` e-mail about the request once the current transaction commits."""
    if kind not in KINDS:
        raise ValueError(f"{kind!r} is not a notification: expected one of {', '.join(KINDS)}.")
    transaction.on_commit(partial(enqueue, kind, request_id))


def enqueue(kind: str, request_id: int) -> None:
    """Hand the e-mail to the workers; if that fails, log it and carry on."""
    from . import tasks

    try:
        tasks.send_notification.delay(kind, request_id)
    except Exception:
        logger.exception("The %s e-mail about request %s could not be queued.", kind, request_id)


def request_url(request: ActionRequest) -> str:
    path = reverse("request_detail", args=[request.organization.slug, request.uuid])
    return f"{settings.PORTAL_URL}{path}"


def admin_addresses(request: ActionRequest) -> list[str]:
    """The organization's active admins with an address, then its extra addresses; no repeats."""
    admins = (
        Membership.objects.filter(
            organization=request.organization, role=Role.ADMIN, user__is_active=True
        )
        .exclude(user__email="")
        .order_by("user__username")
        .values_list("user__email", flat=True)
    )
    extra = ApprovalSettings.for_organization(request.organization).notify_emails
    addresses, seen = [], set()
    for address in [*admins, *extra]:
        if address.lower() not in seen:
            seen.add(address.lower())
            addresses.append(address)
    return addresses


def recipients(kind: str, request: ActionRequest) -> list[str]:
    if KINDS[kind].to_admins:
        return admin_addresses(request)
    requester = request.requester
    return [requester.email] if requester.is_active and requester.email else []


def build(kind: str, request: ActionRequest) -> list[EmailMessage]:
    """One message per recipient, so no one sees who else was told."""
    to = recipients(kind, request)
    if not to:
        return []
    targets = list(request.targets.order_by("position")[: SHOWN_TARGETS + 1])
    subject = SUBJECT_PREFIX + KINDS[kind].subject.format(
        action=request.action.name,
        organization=request.organization.name,
        status=request.get_status_display(),
    )
    body = render_to_string(
        f"approvals/email/{kind}.txt",
        {
            "req": request,
            "url": request_url(request),
            "targets": targets[:SHOWN_TARGETS],
            "more_targets": request.targets.count() - SHOWN_TARGETS
            if len(targets) > SHOWN_TARGETS
            else 0,
        },
    ).strip()
    return [EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, [address]) for address in to]


def send(kind: str, request_id: int) -> int:
    """Send the `kind` e-mail about the request now; returns how many messages went out."""
    request = ActionRequest.objects.select_related(
        "organization", "action", "requester", "decided_by"
    ).get(pk=request_id)
    messages = build(kind, request)
    if not messages:
        return 0
    return get_connection().send_messages(messages) or 0

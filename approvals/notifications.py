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

An organization may also name a webhook: each notification is then POSTed to it as JSON,
signed like the webhook executor's calls when NOTIFY_WEBHOOK_SECRET is set.
"""

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import partial

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse

from actions.validators import shown, validate_url
from responseportal.http import OPENER, SIGNATURE_HEADER, outbound_url_problem, sign
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
    """Hand the e-mail (and the webhook call, if any) to the workers; log a failure, carry on."""
    from .execution import tasks  # a lazy import: the tasks module imports this one

    try:
        tasks.send_notification.delay(kind, request_id)
        has_webhook = (
            ApprovalSettings.objects.filter(organization__requests=request_id)
            .exclude(notify_webhook_url="")
            .exists()
        )
        if has_webhook:
            tasks.send_webhook_notification.delay(kind, request_id)
    except Exception:
        logger.exception(
            "The %s e-mail or webhook notice about request %s could not be queued.",
            kind,
            request_id,
        )


def validate_webhook_url(address: str) -> str:
    """An https address on the public internet, where the portal may POST notifications."""
    url = validate_url(address)
    problem = outbound_url_problem(url)
    if problem:
        raise ValidationError(
            f"`{shown(address)}` {problem}: expected an https address such as "
            "https://hooks.example.com/portal."
        )
    return url


def request_url(action_request: ActionRequest) -> str:
    path = reverse("request_detail", args=[action_request.organization.slug, action_request.uuid])
    return f"{settings.PORTAL_URL}{path}"


def admin_addresses(action_request: ActionRequest) -> list[str]:
    """The organization's active admins with an address, then its extra addresses; no repeats."""
    admins = (
        Membership.objects.filter(
            organization=action_request.organization, role=Role.ADMIN, user__is_active=True
        )
        .exclude(user__email="")
        .order_by("user__username")
        .values_list("user__email", flat=True)
    )
    extra = ApprovalSettings.for_organization(action_request.organization).notify_emails
    addresses, seen = [], set()
    for address in [*admins, *extra]:
        if address.lower() not in seen:
            seen.add(address.lower())
            addresses.append(address)
    return addresses


def recipients(kind: str, action_request: ActionRequest) -> list[str]:
    if KINDS[kind].to_admins:
        return admin_addresses(action_request)
    requester = action_request.requester
    return [requester.email] if requester.is_active and requester.email else []


def build(kind: str, action_request: ActionRequest) -> list[EmailMessage]:
    """One message per recipient, so no one sees who else was told."""
    to = recipients(kind, action_request)
    if not to:
        return []
    targets = list(action_request.targets.order_by("position")[: SHOWN_TARGETS + 1])
    subject = SUBJECT_PREFIX + KINDS[kind].subject.format(
        action=action_request.action.name,
        organization=action_request.organization.name,
        status=action_request.get_status_display(),
    )
    body = render_to_string(
        f"approvals/email/{kind}.txt",
        {
            "req": action_request,
            "url": request_url(action_request),
            "targets": targets[:SHOWN_TARGETS],
            "more_targets": action_request.targets.count() - SHOWN_TARGETS
            if len(targets) > SHOWN_TARGETS
            else 0,
        },
    ).strip()
    return [EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, [address]) for address in to]


def send(kind: str, request_id: int) -> int:
    """Send the `kind` e-mail about the request now; returns how many messages went out."""
    action_request = ActionRequest.objects.select_related(
        "organization", "action", "requester", "decided_by"
    ).get(pk=request_id)
    messages = build(kind, action_request)
    if not messages:
        return 0
    return get_connection().send_messages(messages) or 0


def webhook_payload(kind: str, action_request: ActionRequest) -> bytes:
    """The JSON a webhook receives: what happened, to which request, and where to see it."""
    targets = list(action_request.targets.order_by("position")[:SHOWN_TARGETS])
    payload = {
        "event": kind,
        "subject": KINDS[kind].subject.format(
            action=action_request.action.name,
            organization=action_request.organization.name,
            status=action_request.get_status_display(),
        ),
        "request": {
            "uuid": str(action_request.uuid),
            "organization": action_request.organization.slug,
            "action": action_request.action.key,
            "action_name": action_request.action.name,
            "status": action_request.status,
            "approval_mode": action_request.approval_mode,
            "requester": action_request.requester.get_username(),
            "decided_by": action_request.decided_by.get_username()
            if action_request.decided_by
            else None,
            "decision_reason": action_request.decision_reason,
            "submitted_at": action_request.submitted_at.isoformat(),
            "targets": [target.value for target in targets],
            "target_count": action_request.targets.count(),
            "url": request_url(action_request),
        },
    }
    return json.dumps(payload, sort_keys=True).encode()


def send_webhook(kind: str, request_id: int) -> int | None:
    """POST the `kind` notice to the organization's webhook; its HTTP status, None if none set.

    An HTTP error answer is returned as its status; a network failure raises, to be retried.
    """
    action_request = ActionRequest.objects.select_related(
        "organization", "action", "requester", "decided_by"
    ).get(pk=request_id)
    url = ApprovalSettings.for_organization(action_request.organization).notify_webhook_url
    if not url:
        return None
    body = webhook_payload(kind, action_request)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Response Portal",
        "X-Response-Portal-Event": kind,
    }
    if settings.NOTIFY_WEBHOOK_SECRET:
        headers[SIGNATURE_HEADER] = sign(body, settings.NOTIFY_WEBHOOK_SECRET)
    call = urllib.request.Request(url, data=body, method="POST", headers=headers)  # noqa: S310
    try:
        with OPENER.open(call, timeout=settings.NOTIFY_WEBHOOK_TIMEOUT) as response:
            return response.status
    except urllib.error.HTTPError as error:
        if error.code >= 500:
            raise
        logger.warning("The webhook of %s refused the %s notice: HTTP %s.", url, kind, error.code)
        return error.code

"""E-mail to the people a request concerns, sent by a task after the change has committed.

| kind | to | when |
|---|---|---|
| `pending` | the organization's admins and its extra addresses | a request waits for a decision |
| `auto_approved` | the same | a request was approved automatically |
| `approved`, `rejected` | the requester | an admin decided |
| `expired` | the requester | nobody decided in time |
| `finished` | the requester | execution ended, with each target's result |
| `reminder` | the same as `pending` | still pending after the remind-after time (once) |
| `close_to_expiry` | the same | a quarter of a waiting request's lifetime is left (once) |
| `break_glass` | the same as `pending` | an operator broke glass: it runs at once, to be reviewed |
| `review_overdue` | the same | a break-glass run is still unreviewed a day later (announced once) |

Every notification goes through an outbox (`Notification`): `schedule` writes it in the
transaction of the change, a worker delivers it once that commits, and `deliver_due` (beat,
every minute, and `manage.py deliver_notifications`) delivers whatever is still unsent, with a
growing wait between attempts. So a broker, worker, mail server or webhook that is down delays
a notification but loses none: each is delivered at least once. Two workers never deliver the
same one at once (its row is locked, and a locked row is skipped).

A mail server that fails is logged; it never blocks or undoes the change. Links are plain URLs
of the request page (`PORTAL_URL` + path) and carry nothing secret: the page asks the reader to
sign in and shows the request only to members of its organization. The `pending` e-mail, in
plain text and HTML, also carries each admin's own Approve and Reject links
(`email_links.py`): they open a confirmation page, after signing in, for that admin only. An
extra address, and an admin who submitted the request, get no such links.

An organization may also name a webhook: each notification is then POSTed to it as JSON,
signed like the webhook executor's calls when NOTIFY_WEBHOOK_SECRET is set.

Digests (`approvals/digests.py`): with the organization's digest interval above 0 (default 5
minutes), its admins hear of automatic approvals in one e-mail per interval, and a requester
whose requests finish more than `REQUESTER_DIGEST_AFTER` times within the interval hears of the
rest in one e-mail too. Such a notification is written `in_digest`: the worker sends its webhook
notice (at once, in a batch with others: `deliver_webhook_batch`), and the digest its e-mail.
Requests waiting for a decision, reminders, break-glass runs and decisions go out at once.
"""

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage, EmailMultiAlternatives, get_connection
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from actions.validators import shown, validate_url
from responseportal.http import (
    SIGNATURE_HEADER,
    masked_url,
    open_outbound,
    outbound_url_problem,
    sign,
)
from responseportal.models import Membership, Role

from . import email_links
from .models import ActionRequest, ApprovalSettings, Notification

logger = logging.getLogger(__name__)

PENDING = "pending"
AUTO_APPROVED = "auto_approved"
APPROVED = "approved"
REJECTED = "rejected"
EXPIRED = "expired"
FINISHED = "finished"
REMINDER = "reminder"
CLOSE_TO_EXPIRY = "close_to_expiry"
BREAK_GLASS = "break_glass"
REVIEW_OVERDUE = "review_overdue"

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
    REMINDER: Kind("Reminder, approval still needed: {action} in {organization}", to_admins=True),
    CLOSE_TO_EXPIRY: Kind(
        "Expires soon, approval still needed: {action} in {organization}", to_admins=True
    ),
    BREAK_GLASS: Kind("Break-glass, review needed: {action} in {organization}", to_admins=True),
    REVIEW_OVERDUE: Kind(
        "Break-glass still unreviewed: {action} in {organization}", to_admins=True
    ),
}


# The kinds that ask the admins for a decision, with Approve and Reject links (approvals/
# reminders.py sends the reminders); a reminder about a request that no longer waits is not sent.
REMINDERS = frozenset({REMINDER, CLOSE_TO_EXPIRY})
DECISION_KINDS = REMINDERS | {PENDING}


# The worker that gets a notification right after commit has this long before the periodic
# delivery takes it as its own; then the waits between attempts double up to an hour.
FIRST_RETRY_AFTER = timedelta(seconds=30)
LONGEST_WAIT = timedelta(hours=1)
# About five hours of attempts; then the notification stays unsent, with its last error.
MAX_ATTEMPTS = 12
# How many the periodic delivery takes in one run; the next run takes the rest.
BATCH = 200
# The last error kept with a notification, in characters.
LONGEST_ERROR = 2000

# The kinds whose e-mail may wait for a digest (approvals/digests.py).
DIGEST_KINDS = frozenset({AUTO_APPROVED, FINISHED})
# A requester hears of this many finished requests within the digest interval one by one;
# the next ones wait for the digest.
REQUESTER_DIGEST_AFTER = 3
# Webhook notices of digested notifications go out together, this many seconds after the
# first of them commits: one task delivers them all.
WEBHOOK_BATCH_DELAY = 2
WEBHOOK_BATCH_QUEUED = "notifications:webhook-batch-queued"


def schedule(
    kind: str,
    action_request: ActionRequest | int,
    *,
    approval_settings: ApprovalSettings | None = None,
) -> Notification | None:
    """Write the `kind` notification into the outbox, in the current transaction, and hand it
    to the workers once that commits. None if nobody is to be told (no recipient, no webhook).

    A caller that holds the request (with its organization and requester) passes it, and the
    organization's `approval_settings` if it holds them too; with the request's id alone, both
    are read here.
    """
    if kind not in KINDS:
        raise ValueError(f"{kind!r} is not a notification: expected one of {', '.join(KINDS)}.")
    if not isinstance(action_request, ActionRequest):
        action_request = ActionRequest.objects.select_related("organization", "requester").get(
            pk=action_request
        )
    if approval_settings is None:
        approval_settings = ApprovalSettings.for_organization(action_request.organization)
    email_due = bool(recipients(kind, action_request, approval_settings=approval_settings))
    webhook_due = bool(approval_settings.notify_webhook_url)
    if not email_due and not webhook_due:
        return None
    now = timezone.now()
    in_digest = email_due and waits_for_digest(
        kind, action_request, minutes=approval_settings.digest_minutes, now=now
    )
    notification = Notification.objects.create(
        request=action_request,
        kind=kind,
        email_due=email_due,
        webhook_due=webhook_due,
        created_at=now,
        # A digested e-mail alone is the digest's to send, not the periodic delivery's.
        next_attempt_at=now + FIRST_RETRY_AFTER if webhook_due or not in_digest else None,
        in_digest=in_digest,
    )
    if not in_digest:
        transaction.on_commit(partial(enqueue, notification.pk, kind, action_request.pk))
    elif webhook_due:
        transaction.on_commit(queue_webhook_batch)
    return notification


def waits_for_digest(
    kind: str, action_request: ActionRequest, *, minutes: int, now: datetime
) -> bool:
    """Whether the `kind` e-mail about the request waits for the organization's digest: an
    automatic approval does, with an interval; an outcome does once its requester heard of
    `REQUESTER_DIGEST_AFTER` others within the interval."""
    if minutes == 0 or kind not in DIGEST_KINDS:
        return False
    if kind == AUTO_APPROVED:
        return True
    recent = Notification.objects.filter(
        kind=kind,
        email_due=True,
        request__organization_id=action_request.organization_id,
        request__requester_id=action_request.requester_id,
        created_at__gt=now - timedelta(minutes=minutes),
    ).values("pk")[:REQUESTER_DIGEST_AFTER]
    return len(recent) >= REQUESTER_DIGEST_AFTER


def queue_webhook_batch() -> None:
    """Have one worker deliver the digested notifications' webhook notices shortly, unless
    such a batch is queued already; whatever it misses, the periodic delivery sends."""
    from .execution import tasks  # a lazy import: the tasks module imports this one

    if not cache.add(WEBHOOK_BATCH_QUEUED, True, timeout=WEBHOOK_BATCH_DELAY + 60):
        return
    try:
        tasks.deliver_webhooks.apply_async(countdown=WEBHOOK_BATCH_DELAY)
    except Exception:
        cache.delete(WEBHOOK_BATCH_QUEUED)
        logger.exception(
            "The webhook notices could not be queued; they stay in the outbox and the "
            "periodic delivery (deliver_notifications) will send them."
        )


def deliver_webhook_batch() -> int:
    """Deliver every digested notification's webhook notice not yet tried; how many are now
    wholly sent. A notice that fails is retried by the periodic delivery."""
    # Cleared first: a notification committed from now on queues the next batch.
    cache.delete(WEBHOOK_BATCH_QUEUED)
    pks = list(
        Notification.objects.filter(
            in_digest=True, webhook_due=True, webhook_sent_at__isnull=True, attempts=0
        )
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)[:BATCH]
    )
    delivered = 0
    for pk in pks:
        try:
            delivered += deliver(pk)
        except Exception:
            logger.exception("Notification %s could not be delivered; the next run retries.", pk)
    if len(pks) == BATCH:
        queue_webhook_batch()
    return delivered


def enqueue(notification_id: int, kind: str, request_id: int) -> None:
    """Hand the notification to the workers; if the broker is down, log it: it stays in the
    outbox and the periodic delivery sends it."""
    from .execution import tasks  # a lazy import: the tasks module imports this one

    try:
        tasks.deliver_notification.delay(notification_id)
    except Exception:
        logger.exception(
            "The %s e-mail or webhook notice about request %s could not be queued; it stays "
            "in the outbox and the periodic delivery (deliver_notifications) will send it.",
            kind,
            request_id,
        )


def wait_after(attempts: int) -> timedelta:
    """How long the periodic delivery waits after the `attempts`-th failed attempt."""
    return min(FIRST_RETRY_AFTER * 2 ** max(attempts - 1, 0), LONGEST_WAIT)


def deliver(notification_id: int) -> bool:
    """Deliver the parts of one notification still unsent; True if it is now wholly sent.

    False, doing nothing, if it was already sent or another worker is delivering it now.
    """
    with transaction.atomic():
        notification = (
            Notification.objects.select_for_update(skip_locked=True)
            .filter(pk=notification_id, sent_at__isnull=True)
            .first()
        )
        if notification is None:
            return False
        _attempt(notification)
        return notification.sent_at is not None


def _attempt(notification: Notification) -> None:
    kind, request_id = notification.kind, notification.request_id
    notification.attempts += 1
    errors = []
    if notification.email_due and notification.email_sent_at is None and not notification.in_digest:
        try:
            with transaction.atomic():  # a database error here spoils only this part
                send(kind, request_id)
            notification.email_sent_at = timezone.now()
        except Exception as error:
            logger.exception(
                "The %s e-mail about request %s could not be sent (attempt %s of %s).",
                kind,
                request_id,
                notification.attempts,
                MAX_ATTEMPTS,
            )
            errors.append(f"e-mail: {type(error).__name__}: {error}")
    if notification.webhook_due and notification.webhook_sent_at is None:
        try:
            with transaction.atomic():
                status = send_webhook(kind, request_id)
            notification.webhook_sent_at = timezone.now()
            if status is not None and status >= 400:
                errors.append(f"webhook: refused with HTTP {status}; not sent again.")
        except Exception as error:
            logger.exception(
                "The %s webhook notice about request %s failed (attempt %s of %s).",
                kind,
                request_id,
                notification.attempts,
                MAX_ATTEMPTS,
            )
            errors.append(f"webhook: {type(error).__name__}: {error}")
    now = timezone.now()
    notification.last_error = _storable("\n".join(errors))
    email_done = not notification.email_due or notification.email_sent_at is not None
    webhook_done = not notification.webhook_due or notification.webhook_sent_at is not None
    if email_done and webhook_done:
        notification.sent_at = now
        notification.next_attempt_at = None
    elif webhook_done and notification.in_digest:
        notification.next_attempt_at = None  # what is left is the digest's e-mail
    elif notification.attempts >= MAX_ATTEMPTS:
        notification.next_attempt_at = None
        logger.error(
            "Gave up on the %s notification about request %s after %s attempts: %s",
            kind,
            request_id,
            notification.attempts,
            notification.last_error,
        )
    else:
        notification.next_attempt_at = now + wait_after(notification.attempts)
    notification.save()


def _storable(text: str) -> str:
    """An error message any database can store: no NUL, no lone surrogate, bounded."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    if len(text) > LONGEST_ERROR:
        text = text[: LONGEST_ERROR - 1] + "…"
    return text


def deliver_due(*, now: datetime | None = None, everything: bool = False) -> int:
    """Deliver the unsent notifications whose next attempt is due (all of them, gave-up ones
    included, with `everything`); returns how many are now sent."""
    unsent = Notification.objects.filter(sent_at__isnull=True)
    if not everything:
        unsent = unsent.filter(next_attempt_at__lte=now or timezone.now())
    pks = list(unsent.order_by("next_attempt_at", "pk").values_list("pk", flat=True)[:BATCH])
    delivered = 0
    for pk in pks:
        try:
            delivered += deliver(pk)
        except Exception:  # one notification that cannot be handled never stops the others
            logger.exception("Notification %s could not be delivered; the next run retries.", pk)
    return delivered


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


def admin_addresses(
    action_request: ActionRequest, *, approval_settings: ApprovalSettings | None = None
) -> list[str]:
    """The organization's active admins with an address, then its extra addresses (from its
    `approval_settings`, read here unless given); no repeats."""
    admins = (
        Membership.objects.filter(
            organization=action_request.organization, role=Role.ADMIN, user__is_active=True
        )
        .exclude(user__email="")
        .order_by("user__username")
        .values_list("user__email", flat=True)
    )
    if approval_settings is None:
        approval_settings = ApprovalSettings.for_organization(action_request.organization)
    extra = approval_settings.notify_emails
    addresses, seen = [], set()
    for address in [*admins, *extra]:
        if address.lower() not in seen:
            seen.add(address.lower())
            addresses.append(address)
    return addresses


def recipients(
    kind: str, action_request: ActionRequest, *, approval_settings: ApprovalSettings | None = None
) -> list[str]:
    if KINDS[kind].to_admins:
        return admin_addresses(action_request, approval_settings=approval_settings)
    requester = action_request.requester
    return [requester.email] if requester.is_active and requester.email else []


def deciders(kind: str, action_request: ActionRequest) -> dict[str, object]:
    """The admins who get Approve and Reject links in the `kind` e-mail, by lower-cased
    address: for a pending request, its organization's active admins, except its requester
    and those who already approved it (two-person approval: a reminder asks the others)."""
    if (
        kind not in DECISION_KINDS
        or not action_request.is_pending
        or action_request.expires_at is None
    ):
        return {}
    admins = (
        Membership.objects.filter(
            organization=action_request.organization, role=Role.ADMIN, user__is_active=True
        )
        .exclude(user__email="")
        .exclude(user_id=action_request.requester_id)
        .exclude(user_id__in=action_request.approvals.values("admin_id"))
        .select_related("user")
        .order_by("user__username")
    )
    found = {}
    for membership in admins:
        found.setdefault(membership.user.email.lower(), membership.user)
    return found


def outdated(kind: str, action_request: ActionRequest) -> bool:
    """A reminder about a request that no longer waits (decided, cancelled or expired since it
    was written): neither its e-mail nor its webhook notice is sent."""
    return kind in REMINDERS and (not action_request.is_pending or action_request.is_overdue())


def build(kind: str, action_request: ActionRequest) -> list[EmailMessage]:
    """One message per recipient, so no one sees who else was told (nor anyone's links)."""
    to = recipients(kind, action_request)
    if not to or outdated(kind, action_request):
        return []
    targets = list(action_request.targets.order_by("position")[: SHOWN_TARGETS + 1])
    subject = SUBJECT_PREFIX + KINDS[kind].subject.format(
        action=action_request.action.name,
        organization=action_request.organization.name,
        status=action_request.get_status_display(),
    )
    context = {
        "req": action_request,
        "url": request_url(action_request),
        "targets": targets[:SHOWN_TARGETS],
        "more_targets": action_request.targets.count() - SHOWN_TARGETS
        if len(targets) > SHOWN_TARGETS
        else 0,
    }
    if kind in DECISION_KINDS:
        # What will run: the endpoints are listed as targets already.
        context["parameters"] = [
            {**row, "lines": row["text"].splitlines()[:SHOWN_TARGETS]}
            for row in action_request.parameter_rows()
            if row["name"] != "endpoints"
        ]
    links_for = deciders(kind, action_request)
    messages = []
    for address in to:
        admin = links_for.get(address.lower())
        personal = {
            **context,
            "is_requester": address.lower() == _requester_address(kind, action_request),
        }
        if admin is not None:
            personal.update(email_links.urls_for(action_request, admin))
        body = render_to_string(f"approvals/email/{kind}.txt", personal).strip()
        message = EmailMultiAlternatives(subject, body, settings.DEFAULT_FROM_EMAIL, [address])
        if kind in DECISION_KINDS:
            message.attach_alternative(
                render_to_string(f"approvals/email/{kind}.html", personal), "text/html"
            )
        messages.append(message)
    return messages


def _requester_address(kind: str, action_request: ActionRequest) -> str | None:
    """The requester's address where the e-mail goes to admins (an admin who submitted the
    request is told another admin must decide it)."""
    if not KINDS[kind].to_admins:
        return None
    return (action_request.requester.email or "").lower() or None


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
            "justification": action_request.justification,
            "submitted_at": action_request.submitted_at.isoformat(),
            "expires_at": action_request.expires_at.isoformat()
            if action_request.expires_at
            else None,
            "targets": [target.value for target in targets],
            "target_count": action_request.targets.count(),
            "url": request_url(action_request),
        },
    }
    return json.dumps(payload, sort_keys=True).encode()


def send_webhook(kind: str, request_id: int) -> int | None:
    """POST the `kind` notice to the organization's webhook; its HTTP status, None if none set.

    An HTTP error answer is returned as its status; a network failure raises, to be retried,
    and so does an address the portal may not call (OutboundRefused, which names no secret).
    """
    action_request = ActionRequest.objects.select_related(
        "organization", "action", "requester", "decided_by"
    ).get(pk=request_id)
    url = ApprovalSettings.for_organization(action_request.organization).notify_webhook_url
    if not url or outdated(kind, action_request):
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
        # Resolves the host now and refuses (OutboundRefused) an address inside the network.
        with open_outbound(call, timeout=settings.NOTIFY_WEBHOOK_TIMEOUT) as response:
            return response.status
    except urllib.error.HTTPError as error:
        if error.code >= 500:
            raise
        logger.warning(
            "The webhook of %s refused the %s notice: HTTP %s.", masked_url(url), kind, error.code
        )
        return error.code

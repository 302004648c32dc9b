"""Digests: the e-mails that wait (`Notification.in_digest`) go out together, one per interval.

| digest | to | lists |
|---|---|---|
| automatic approvals | the organization's admins and extra addresses | each such request |
| outcomes | one requester | their requests that finished past the interval's first few |

A group (an organization's automatic approvals, or one requester's outcomes in it) is due once
its oldest waiting e-mail is as old as the organization's digest interval; `send_due_digests`
(beat, every minute) then sends it with everything waiting in the group. A group of one is sent
as the ordinary e-mail of its kind.

Nothing lost, nothing sent twice: a run holds the group (a PostgreSQL advisory lock; another
run skips the group) and its waiting rows (`select_for_update`) in the transaction that marks
them sent, so two runs at once send one digest, whole. A run that dies before its commit
leaves them waiting, and the next run sends them (at least once, as the outbox does). A mail
server that fails is noted on the rows and the next run tries again.
"""

import logging
import zlib
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import connection, transaction
from django.db.models import Min, Prefetch, Q, QuerySet
from django.template.loader import render_to_string
from django.utils import timezone

from .models import ApprovalSettings, Notification, RequestTarget
from .notifications import (
    AUTO_APPROVED,
    FINISHED,
    SUBJECT_PREFIX,
    _storable,
    admin_addresses,
    build,
    request_url,
)

logger = logging.getLogger(__name__)

# Requests listed in one digest; the rest go in the next one, sent on the next run.
DIGEST_LIMIT = 500
# Targets listed per request in a digest; the request's page shows them all.
DIGEST_SHOWN_TARGETS = 5

# The first key of the advisory locks that hold digest groups (PostgreSQL), any int4.
DIGEST_LOCKS = 160_002

SUBJECTS = {
    AUTO_APPROVED: "Approved automatically: {count} requests in {organization}",
    FINISHED: "Finished: {count} of your requests in {organization}",
}


def waiting() -> QuerySet[Notification]:
    """The e-mails waiting for a digest."""
    return Notification.objects.filter(in_digest=True, email_due=True, email_sent_at__isnull=True)


def send_due_digests(*, now: datetime | None = None) -> int:
    """Send every digest whose interval is over; returns how many e-mails went out."""
    now = now or timezone.now()
    groups = (
        waiting()
        .values("request__organization_id", "kind", "request__requester_id")
        .annotate(oldest=Min("created_at"))
        .order_by("oldest")
    )
    intervals = {}
    sent = 0
    for group in groups:
        organization_id = group["request__organization_id"]
        if organization_id not in intervals:
            found = ApprovalSettings.objects.filter(organization_id=organization_id).first()
            intervals[organization_id] = timedelta(
                minutes=found.digest_minutes if found else ApprovalSettings().digest_minutes
            )
        if group["oldest"] > now - intervals[organization_id]:
            continue
        try:
            sent += send_digest(
                organization_id,
                group["kind"],
                requester_id=group["request__requester_id"] if group["kind"] == FINISHED else None,
                due_before=now - intervals[organization_id],
            )
        except Exception:  # one digest that cannot be handled never stops the others
            logger.exception(
                "The %s digest of organization %s could not be sent; the next run retries.",
                group["kind"],
                organization_id,
            )
    return sent


def send_digest(
    organization_id: int, kind: str, *, requester_id: int | None, due_before: datetime
) -> int:
    """Send one group's digest if its oldest waiting e-mail is older than `due_before`;
    returns how many e-mails went out (0 if another run holds or sent it)."""
    group = waiting().filter(request__organization_id=organization_id, kind=kind)
    if requester_id is not None:
        group = group.filter(request__requester_id=requester_id)
    with transaction.atomic():
        if not _hold_group(organization_id, kind, requester_id):
            return 0
        rows = list(
            group.select_for_update(skip_locked=True, of=("self",))
            .select_related("request__organization", "request__action", "request__requester")
            .prefetch_related(
                Prefetch(
                    "request__targets",
                    queryset=RequestTarget.objects.order_by("position"),
                )
            )
            .order_by("created_at", "pk")[:DIGEST_LIMIT]
        )
        if not rows or rows[0].created_at > due_before:
            return 0
        try:
            messages = (
                build(kind, rows[0].request) if len(rows) == 1 else _digest_messages(kind, rows)
            )
            count = (get_connection().send_messages(messages) or 0) if messages else 0
        except Exception as error:
            logger.exception(
                "The %s digest of organization %s (%s requests) could not be sent.",
                kind,
                organization_id,
                len(rows),
            )
            for row in rows:
                row.attempts += 1
                row.last_error = _storable(f"digest e-mail: {type(error).__name__}: {error}")
            Notification.objects.bulk_update(rows, ["attempts", "last_error"])
            return 0
        now = timezone.now()
        pks = [row.pk for row in rows]
        Notification.objects.filter(pk__in=pks).update(email_sent_at=now, last_error="")
        Notification.objects.filter(pk__in=pks).filter(
            Q(webhook_due=False) | Q(webhook_sent_at__isnull=False)
        ).update(sent_at=now, next_attempt_at=None)
    return count


def _hold_group(organization_id: int, kind: str, requester_id: int | None) -> bool:
    """Whether this transaction now holds the group, False if another run does: the rows' own
    locks alone would let two runs scanning at once share a group's rows and send two digests.
    SQLite has one writer at a time and no such lock."""
    if connection.vendor != "postgresql":
        return True
    group = zlib.crc32(f"{organization_id}:{kind}:{requester_id}".encode()) - 2**31
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", [DIGEST_LOCKS, group])
        return cursor.fetchone()[0]


def _digest_messages(kind: str, rows: list[Notification]) -> list[EmailMultiAlternatives]:
    """One message per recipient, so no one sees who else was told."""
    first = rows[0].request
    if kind == AUTO_APPROVED:
        to = admin_addresses(first)
    else:
        requester = first.requester
        to = [requester.email] if requester.is_active and requester.email else []
    items = []
    for row in rows:
        targets = list(row.request.targets.all())
        items.append(
            {
                "req": row.request,
                "url": request_url(row.request),
                "targets": targets[:DIGEST_SHOWN_TARGETS],
                "more_targets": max(len(targets) - DIGEST_SHOWN_TARGETS, 0),
            }
        )
    context = {
        "kind": kind,
        "organization": first.organization,
        "items": items,
        "count": len(items),
        "since": rows[0].created_at,
        "until": rows[-1].created_at,
    }
    subject = SUBJECT_PREFIX + SUBJECTS[kind].format(
        count=len(items), organization=first.organization.name
    )
    body = render_to_string("approvals/email/digest.txt", context).strip()
    html = render_to_string("approvals/email/digest.html", context)
    messages = []
    for address in to:
        message = EmailMultiAlternatives(subject, body, settings.DEFAULT_FROM_EMAIL, [address])
        message.attach_alternative(html, "text/html")
        messages.append(message)
    return messages

"""Reminders to the admins about a request that still waits for their decision.

A pending request is announced again, to the same people and through the same outbox as the
pending e-mail (with the same Approve and Reject links, and to the webhook):

- once `remind_after_minutes` (the organization's setting) after its submission
  (`notifications.REMINDER`);
- once more when a quarter of its lifetime is left (`notifications.CLOSE_TO_EXPIRY`); when both
  fall due in the same run (beat was down), only this last one is sent.

An organization whose setting is 0 sends none. `send_due_reminders` runs every minute (beat,
and `manage.py send_reminders`). Each reminder is claimed by a conditional UPDATE of the
request's row (still pending, not overdue, without that reminder yet), in the transaction that
writes its audit event (`request.reminded`) and its notification: two runs at once send it once,
and a request decided, cancelled or expired in the meantime gets none.
"""

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from audit.chain import record

from . import notifications
from .models import ActionRequest, ApprovalSettings, Reminder, RequestStatus

NOTIFICATION_OF = {
    Reminder.STILL_WAITING: notifications.REMINDER,
    Reminder.CLOSE_TO_EXPIRY: notifications.CLOSE_TO_EXPIRY,
}
DEFAULT_REMIND_AFTER = ApprovalSettings._meta.get_field("remind_after_minutes").default


def due_reminder(
    action_request: ActionRequest, remind_after_minutes: int, now: datetime
) -> Reminder | None:
    """The reminder to send about the request now; None if none is due or it was sent."""
    if (
        not remind_after_minutes
        or not action_request.is_pending
        or action_request.expires_at is None
        or action_request.is_overdue(now)
    ):
        return None
    if action_request.is_close_to_expiry(now):
        due = Reminder.CLOSE_TO_EXPIRY
    elif now >= action_request.submitted_at + timedelta(minutes=remind_after_minutes):
        due = Reminder.STILL_WAITING
    else:
        return None
    return due if due > action_request.last_reminder else None


def send_due_reminders(*, now: datetime | None = None) -> int:
    """Send every reminder due now; returns how many were sent by this run."""
    now = now or timezone.now()
    remind_after = dict(
        ApprovalSettings.objects.values_list("organization_id", "remind_after_minutes")
    )
    waiting = list(
        ActionRequest.objects.filter(
            status=RequestStatus.PENDING,
            expires_at__gt=now,
            last_reminder__lt=Reminder.CLOSE_TO_EXPIRY,
        )
        .only("pk", "organization_id", "status", "submitted_at", "expires_at", "last_reminder")
        .order_by("expires_at", "pk")
    )
    sent = 0
    for candidate in waiting:
        minutes = remind_after.get(candidate.organization_id, DEFAULT_REMIND_AFTER)
        reminder = due_reminder(candidate, minutes, now)
        if reminder is not None:
            sent += remind(candidate.pk, reminder, now=now, remind_after_minutes=minutes)
    return sent


def remind(
    request_id: int, reminder: Reminder, *, now: datetime, remind_after_minutes: int
) -> bool:
    """Send `reminder` about the request, unless it no longer waits or already had it (or a
    later one); True if this call sent it."""
    with transaction.atomic():
        claimed = ActionRequest.objects.filter(
            pk=request_id,
            status=RequestStatus.PENDING,
            expires_at__gt=now,
            last_reminder__lt=reminder,
        ).update(last_reminder=reminder, last_reminded_at=now)
        if not claimed:
            return False
        action_request = ActionRequest.objects.select_related("organization", "action").get(
            pk=request_id
        )
        record(
            action_request.organization,
            "request.reminded",
            action_request=action_request,
            data={
                "reminder": NOTIFICATION_OF[reminder],
                "remind_after_minutes": remind_after_minutes,
                "expires_at": action_request.expires_at.isoformat(),
            },
        )
        notifications.schedule(NOTIFICATION_OF[reminder], action_request.pk)
    return True

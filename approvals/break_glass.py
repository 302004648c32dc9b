"""Break-glass: an operator runs an allowed action at once and an admin reviews it afterwards.

Whether a request may break glass is the decision rule's (`decide(..., break_glass=True)`);
submitting and reviewing are services (`submit_request`, `review_request`). Here: what a
justification must be, which runs still wait for a review, and the announcement, once, of a
run left unreviewed for `REVIEW_DUE_AFTER`.
"""

from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from actions.validators import refuse_invisible
from audit.chain import record
from responseportal.models import Organization

from . import notifications
from .models import ActionRequest, ApprovalMode

MIN_JUSTIFICATION = 20
MAX_JUSTIFICATION = 2_000
REVIEW_DUE_AFTER = timedelta(hours=24)


def cleaned_justification(text: str) -> str:
    """The justification without its surrounding spaces; ValidationError saying what is wrong.

    Spaces in a row count once, so padding never makes a short justification long enough.
    """
    text = text.strip()
    refuse_invisible(text, what="The justification")
    length = len(" ".join(text.split()))
    if length < MIN_JUSTIFICATION:
        raise ValidationError(
            f"A break-glass justification needs at least {MIN_JUSTIFICATION} characters "
            f"(spaces in a row count once); this one has {length}. Say why this cannot wait "
            "for an admin's approval.",
            code="short",
        )
    if len(text) > MAX_JUSTIFICATION:
        raise ValidationError(
            f"A break-glass justification has at most {MAX_JUSTIFICATION} characters; this one "
            f"has {len(text)}.",
            code="long",
        )
    return text


def unreviewed(organization: Organization):
    """The organization's break-glass runs that no admin has reviewed yet, oldest first."""
    return ActionRequest.objects.filter(
        organization=organization, approval_mode=ApprovalMode.BREAK_GLASS, reviewed_at__isnull=True
    ).order_by("submitted_at", "id")


def announce_overdue_reviews(*, now: datetime | None = None) -> int:
    """Announce again to the admins each break-glass run unreviewed for `REVIEW_DUE_AFTER`,
    once; returns how many were announced.

    Each run is claimed by a conditional update, so two runs of this job at once (or a run
    reviewed meanwhile) never announce it twice.
    """
    now = now or timezone.now()
    due = ActionRequest.objects.filter(
        approval_mode=ApprovalMode.BREAK_GLASS,
        reviewed_at__isnull=True,
        review_reminded_at__isnull=True,
        submitted_at__lte=now - REVIEW_DUE_AFTER,
    ).values_list("pk", flat=True)
    announced = 0
    for pk in list(due):
        with transaction.atomic():
            claimed = ActionRequest.objects.filter(
                pk=pk, reviewed_at__isnull=True, review_reminded_at__isnull=True
            ).update(review_reminded_at=now)
            if not claimed:
                continue
            action_request = ActionRequest.objects.select_related("organization").get(pk=pk)
            record(
                action_request.organization,
                "request.review_overdue",
                action_request=action_request,
                data={"unreviewed_since": action_request.submitted_at.isoformat()},
            )
            notifications.schedule(notifications.REVIEW_OVERDUE, pk)
            announced += 1
    return announced

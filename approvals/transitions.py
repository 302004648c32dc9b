"""What every change of a request shares: the refusal it raises, the lock on the request's row,
the check of the actor's role, and how times and people are named in refusals.

Services, execution steps and views all use these; this module builds on the models only.
"""

from django.core.exceptions import PermissionDenied
from django.utils import timezone
from django.utils.formats import date_format

from responseportal.models import Membership, Organization, Role
from responseportal.refusals import TransitionRefused

from .models import ActionRequest

# TransitionRefused is defined in the core, so that the audit log refuses a change the same way
# (audit.chain.AuditLogJammed): the views' `except TransitionRefused` shows either refusal.


# The two decisions an admin makes on a pending request, as forms and links name them.
APPROVE, REJECT = "approve", "reject"


class SubmissionRefused(TransitionRefused):
    """The decision rule refuses the request; nothing was created."""


class SeparationOfDuties(TransitionRefused, PermissionDenied):
    """The actor submitted the request, so another admin must decide it."""

    def __init__(self):
        super().__init__(
            "You submitted this request, so another admin must decide it (separation of duties)."
        )


def role_of(user, organization: Organization, allowed: set[Role], doing: str) -> str:
    """The user's role in the organization; PermissionDenied, naming `doing`, unless allowed."""
    role = (
        Membership.objects.filter(user=user, organization=organization)
        .values_list("role", flat=True)
        .first()
    )
    if role not in allowed:
        raise PermissionDenied(f"Your role in {organization.name} does not allow you to {doing}.")
    return role


def when(moment) -> str:
    return date_format(timezone.localtime(moment), "DATETIME_FORMAT")


def who(user) -> str:
    return user.get_username() if user is not None else "the system"


def lock_request(request_id: int) -> ActionRequest:
    """The request's row, locked until the transaction ends, with what its messages name."""
    return (
        ActionRequest.objects.select_for_update(of=("self",))
        .select_related("organization", "action", "requester", "decided_by", "ended_by")
        .get(pk=request_id)
    )

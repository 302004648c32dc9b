"""What is currently in force for an organization's endpoints, derived from what really ran.

Only a target that the executor reported successful counts: an approved request that has not
run yet, or that failed on an endpoint, changes nothing on that endpoint.
"""

from collections.abc import Iterable
from datetime import datetime

from django.db.models import Max, Q
from django.utils import timezone

from actions.catalog import ISOLATE_ENDPOINT, RESTORE_CONNECTION, START_REMOTE_SHELL
from responseportal.models import Organization

from .models import ActionRequest, RequestStatus, RequestTarget, TargetStatus


def isolated_endpoints(organization: Organization, endpoints: Iterable[str]) -> set[str]:
    """The endpoints among `endpoints` that this portal isolated and has not restored since.

    An endpoint is isolated when its latest successful Isolate Endpoint has no later
    successful Restore Connection.
    """
    endpoints = set(endpoints)
    if not endpoints:
        return set()
    # At most two rows per endpoint: its latest successful isolation and its latest restore.
    latest = (
        RequestTarget.objects.filter(
            request__organization=organization,
            request__action__key__in=[ISOLATE_ENDPOINT, RESTORE_CONNECTION],
            status=TargetStatus.SUCCESSFUL,
            kind="endpoint",
            value__in=endpoints,
        )
        .values_list("value", "request__action__key")
        .annotate(latest=Max("finished_at"))
        .order_by()
    )
    isolated_at: dict[str, datetime] = {}
    restored_at: dict[str, datetime] = {}
    for endpoint, key, moment in latest:
        (isolated_at if key == ISOLATE_ENDPOINT else restored_at)[endpoint] = moment
    return {
        endpoint
        for endpoint, moment in isolated_at.items()
        if endpoint not in restored_at or restored_at[endpoint] <= moment
    }


def active_remote_shells(organization: Organization, now: datetime | None = None):
    """Start Remote Shell Session requests in force at `now`: they succeeded, and their
    validity period has not ended, nor has an admin ended them early."""
    now = now or timezone.now()
    return ActionRequest.objects.filter(
        Q(ended_at__isnull=True) | Q(ended_at__gt=now),
        organization=organization,
        action__key=START_REMOTE_SHELL,
        status=RequestStatus.SUCCESSFUL,
        finished_at__lte=now,
        active_until__gt=now,
    )


def has_active_remote_shell(
    organization: Organization, endpoint: str, now: datetime | None = None
) -> bool:
    """Whether a remote shell session on `endpoint` is in force at `now`."""
    return (
        active_remote_shells(organization, now)
        .filter(
            targets__kind="endpoint",
            targets__value=endpoint,
            targets__status=TargetStatus.SUCCESSFUL,
        )
        .exists()
    )

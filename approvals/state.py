"""What is currently in force for an organization's endpoints, derived from its requests."""

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db.models import Max
from django.utils import timezone

from responseportal.models import Organization

from .models import ActionRequest, ApprovalSettings, RequestStatus, RequestTarget

ISOLATE_ENDPOINT = "isolate_endpoint"
RESTORE_CONNECTION = "restore_connection"
START_REMOTE_SHELL = "start_remote_shell"

# Execution is not built yet: a later issue narrows this to the targets that succeeded.
EFFECTIVE_STATUSES = frozenset(
    {
        RequestStatus.APPROVED,
        RequestStatus.QUEUED,
        RequestStatus.IN_PROGRESS,
        RequestStatus.SUCCESSFUL,
        RequestStatus.PARTIALLY_SUCCESSFUL,
    }
)


def isolated_endpoints(organization: Organization, endpoints: Iterable[str]) -> set[str]:
    """The endpoints among `endpoints` that this portal isolated and has not restored since."""
    endpoints = set(endpoints)
    if not endpoints:
        return set()
    # At most two rows per endpoint: its latest effective isolation and its latest restore.
    latest = (
        RequestTarget.objects.filter(
            request__organization=organization,
            request__action__key__in=[ISOLATE_ENDPOINT, RESTORE_CONNECTION],
            request__status__in=EFFECTIVE_STATUSES,
            kind="endpoint",
            value__in=endpoints,
        )
        .values_list("value", "request__action__key")
        .annotate(latest=Max("request__submitted_at"))
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


def has_active_remote_shell(
    organization: Organization, endpoint: str, now: datetime | None = None
) -> bool:
    """Whether a Start Remote Shell Session request for `endpoint` is in force at `now`."""
    now = now or timezone.now()
    validity = timedelta(
        hours=ApprovalSettings.for_organization(organization).remote_shell_validity_hours
    )
    return ActionRequest.objects.filter(
        organization=organization,
        action__key=START_REMOTE_SHELL,
        status__in=EFFECTIVE_STATUSES,
        decided_at__gt=now - validity,
        decided_at__lte=now,
        targets__kind="endpoint",
        targets__value=endpoint,
    ).exists()

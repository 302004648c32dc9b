"""Lookups of an organization's requests, through the one door of `get_membership`."""

from collections.abc import Iterable
from uuid import UUID

from django.http import Http404

from responseportal.access import get_membership
from responseportal.models import Membership, Role

from .models import ActionRequest


def get_request_for(
    user, slug: str, uuid: UUID, *, roles: Iterable[Role] | None = None
) -> tuple[Membership, ActionRequest]:
    """The user's membership and the request `uuid` of organization `slug`.

    404 if the user is not a member or the request belongs to another organization;
    403 if the user does not hold one of `roles`.
    """
    membership = get_membership(user, slug, roles=roles)
    organization = membership.organization
    action_request = (
        ActionRequest.objects.select_related("action", "requester", "decided_by")
        .filter(organization=organization, uuid=uuid)
        .first()
    )
    if action_request is None:
        raise Http404("No such request.")
    # The organization the membership holds (filtered on above): not joined and built again.
    action_request.organization = organization
    return membership, action_request

"""The API's one door: a token acts in its own organization only, with its user's role there."""

from collections.abc import Iterable

from django.http import Http404

from responseportal.access import get_membership
from responseportal.models import Membership, Role


def membership_for(request, slug: str, *, roles: Iterable[Role] | None = None) -> Membership:
    """The token user's membership of `slug` (404 for any other organization than the token's,
    403 for a role not in `roles`)."""
    if request.auth is None or request.auth.organization.slug != slug:
        raise Http404("No such organization.")
    return get_membership(request.user, slug, roles=roles)

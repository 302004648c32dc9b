"""The API's one door: a token acts in its own organization only, with its user's role there."""

from collections.abc import Iterable

from django.http import Http404

from responseportal.access import get_membership
from responseportal.models import Membership, Role


def membership_for(request, slug: str, *, roles: Iterable[Role] | None = None) -> Membership:
    """The token user's membership of `slug` (404 for any other organization than the token's,
    403 for a role not in `roles`).

    The membership is the one the authentication read with the token, in this request; a
    refused role goes through `get_membership`, which words the 403 as the pages do.
    """
    token = request.auth
    if token is None or token.organization.slug != slug:
        raise Http404("No such organization.")
    membership = token.membership
    if roles is not None and membership.role not in set(roles):
        return get_membership(request.user, slug, roles=roles)
    return membership

"""The one place that decides who may see what.

Every view that touches an organization's data gets it through `get_membership` (directly, or
through a lookup helper of the app that owns the object, such as `approvals.lookups`): a user who is
not a member of the organization gets a 404 (its existence is not revealed), a member without
one of the required roles gets a 403.
"""

from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import Http404

from .models import Membership, Role


def get_membership(
    user: AbstractBaseUser | AnonymousUser, slug: str, *, roles: Iterable[Role] | None = None
) -> Membership:
    """The user's membership of organization `slug` (404 if none), holding one of `roles` (403)."""
    if not user.is_authenticated:
        raise Http404("No such organization.")
    membership = (
        Membership.objects.select_related("organization").filter(user=user, organization__slug=slug)
    ).first()
    if membership is None:
        raise Http404("No such organization.")
    if roles is not None and membership.role not in set(roles):
        allowed = ", ".join(sorted(Role(role).label.lower() for role in roles))
        raise PermissionDenied(
            f"This page is for the {allowed} role of {membership.organization.name}; "
            f"you are {membership.get_role_display().lower()}."
        )
    return membership

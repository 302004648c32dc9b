"""The one place that decides who may see what.

Every view that touches an organization's data gets it through `get_membership` (directly, or
through a lookup helper of the app that owns the object, such as `approvals.lookups`): a user who is
not a member of the organization gets a 404 (its existence is not revealed), a member without
one of the required roles gets a 403.

A page of an organization reads the user's memberships once: the middleware that applies the
organization's second-factor policy reads them all (the navigation bar shows them) and keeps
them on the request's user for the rest of that request (`remember_memberships`), so that the
view's `get_membership` decides from the same rows instead of reading one of them again. The
rule is the same either way: no membership of that organization, 404; another role, 403.
"""

from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import Http404

from .models import Membership, Role

# On the request's user, for one request only: {organization slug: membership}.
_MEMBERSHIPS = "_memberships_by_slug"


def remember_memberships(user: AbstractBaseUser, memberships: Iterable[Membership]) -> None:
    """Keep all of `user`'s memberships (with their organizations), just read, for the lookups
    of the current request. The caller forgets them when the request ends."""
    setattr(user, _MEMBERSHIPS, {m.organization.slug: m for m in memberships})


def forget_memberships(user: AbstractBaseUser) -> None:
    """Drop what `remember_memberships` kept: later lookups read the database again."""
    if hasattr(user, _MEMBERSHIPS):
        delattr(user, _MEMBERSHIPS)


def membership_of(user: AbstractBaseUser | AnonymousUser, slug: str) -> Membership | None:
    """The user's membership of organization `slug`, with the organization, or None."""
    if not user.is_authenticated:
        return None
    known = getattr(user, _MEMBERSHIPS, None)
    if known is not None:
        return known.get(slug)
    return (
        Membership.objects.select_related("organization").filter(user=user, organization__slug=slug)
    ).first()


def get_membership(
    user: AbstractBaseUser | AnonymousUser, slug: str, *, roles: Iterable[Role] | None = None
) -> Membership:
    """The user's membership of organization `slug` (404 if none), holding one of `roles` (403)."""
    membership = membership_of(user, slug)
    if membership is None:
        raise Http404("No such organization.")
    if roles is not None and membership.role not in set(roles):
        allowed = ", ".join(sorted(Role(role).label.lower() for role in roles))
        raise PermissionDenied(
            f"This page is for the {allowed} role of {membership.organization.name}; "
            f"you are {membership.get_role_display().lower()}."
        )
    return membership

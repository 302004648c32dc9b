"""The navigation bar: only the pages the user's role in the current organization may use."""

from dataclasses import dataclass

from django.http import HttpRequest

from .models import Membership, Role
from .templatetags.links import cached_reverse


@dataclass(frozen=True)
class NavItem:
    label: str
    url_name: str
    roles: frozenset[Role] = frozenset(Role)
    in_organization: bool = True


NAV_ITEMS = (
    NavItem("Dashboard", "org_dashboard"),
    NavItem("New request", "request_chooser", frozenset({Role.OPERATOR})),
    NavItem("Requests", "request_list"),
    NavItem("Pending queue", "queue", frozenset({Role.ADMIN})),
    NavItem("Needs review", "needs_review", frozenset({Role.ADMIN})),
    NavItem("Approval settings", "approval_settings"),
    NavItem("Scripts", "script_library"),
    NavItem("Audit log", "audit_log", frozenset({Role.ADMIN, Role.AUDITOR})),
    NavItem("Actions catalog", "catalog", in_organization=False),
)


def items_for(membership: Membership | None) -> list[dict]:
    """The navigation entries for a user whose current organization membership is `membership`."""
    items = []
    for item in NAV_ITEMS:
        if item.in_organization:
            if membership is None or membership.role not in item.roles:
                continue
            url = cached_reverse(item.url_name, membership.organization.slug)
        else:
            url = cached_reverse(item.url_name)
        items.append({"label": item.label, "url": url})
    return items


def memberships_of(user) -> list[Membership]:
    """The user's memberships with their organizations, by organization name. A middleware
    that needs them on an organization's page keeps them in `request.memberships`, so that
    the page reads them once."""
    return list(
        Membership.objects.filter(user=user)
        .select_related("organization")
        .order_by("organization__name")
    )


def navigation(request: HttpRequest) -> dict:
    """Template context: the user's memberships, the current one, and the menu for its role."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    memberships = getattr(request, "memberships", None)
    if memberships is None:
        memberships = memberships_of(user)
    match = request.resolver_match
    slug = match.kwargs.get("slug") if match else None
    current = next((m for m in memberships if m.organization.slug == slug), None)
    if current is None and len(memberships) == 1:
        current = memberships[0]
    return {
        "nav_memberships": memberships,
        "nav_current": current,
        "nav_items": items_for(current),
    }

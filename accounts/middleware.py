"""An organization's two-factor policy, held on every page of it."""

from django.contrib import messages
from django.http import HttpRequest
from django.shortcuts import redirect

from responseportal.access import forget_memberships, remember_memberships
from responseportal.navigation import memberships_of

from .factors import has_second_factor


class SecondFactorPolicyMiddleware:
    """A member whose organization requires a second factor of them and who has none is sent
    to the Security page from every page of that organization (`/orgs/<slug>/…`), whatever
    they try; their other organizations work as before. API calls with a bearer token are
    authenticated inside their views, after this, and are not concerned.

    The user's memberships it reads are the page's: the navigation bar lists them
    (`request.memberships`) and the view's access check decides from them
    (`responseportal.access.remember_memberships`), for this request only."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        try:
            return self.get_response(request)
        finally:
            remembered = request.__dict__.pop("_memberships_for", None)
            if remembered is not None:
                forget_memberships(remembered)

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs):
        slug = view_kwargs.get("slug")
        user = getattr(request, "user", None)
        if not slug or user is None or not user.is_authenticated:
            return None
        request.memberships = memberships_of(user)
        remember_memberships(user, request.memberships)
        request._memberships_for = user
        membership = next((m for m in request.memberships if m.organization.slug == slug), None)
        if membership is None or not membership.organization.requires_second_factor(
            membership.role
        ):
            return None
        if has_second_factor(user):
            return None
        messages.warning(
            request,
            f"{membership.organization.name} requires a second factor: set one up here to use it.",
        )
        return redirect("security")

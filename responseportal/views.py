from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from .models import Membership


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Where a user lands after signing in: their organization, or a chooser if several."""
    memberships = list(Membership.objects.filter(user=request.user).select_related("organization"))
    if len(memberships) == 1:
        return redirect("org_dashboard", memberships[0].organization.slug)
    return redirect("org_list")


@login_required
def org_list(request: HttpRequest) -> HttpResponse:
    memberships = (
        Membership.objects.filter(user=request.user)
        .select_related("organization")
        .order_by("organization__name")
    )
    return render(request, "responseportal/org_list.html", {"memberships": memberships})

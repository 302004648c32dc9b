from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from responseportal.access import get_membership

from .dashboard import figures


@login_required
def org_dashboard(request: HttpRequest, slug: str) -> HttpResponse:
    membership = get_membership(request.user, slug)
    organization = membership.organization
    shown = figures(organization)
    return render(
        request,
        "approvals/dashboard.html",
        {
            "membership": membership,
            "organization": organization,
            "figures": shown,
            "chart": shown.chart(),
            "legend": shown.legend(),
            "table": shown.table(),
        },
    )

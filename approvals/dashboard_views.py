from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from responseportal.access import get_membership

from . import break_glass
from .dashboard import figures

# Unreviewed break-glass runs listed on the dashboard; Needs review has them all.
SHOWN_UNREVIEWED = 5


@login_required
def org_dashboard(request: HttpRequest, slug: str) -> HttpResponse:
    membership = get_membership(request.user, slug)
    organization = membership.organization
    shown = figures(organization)
    unreviewed = break_glass.unreviewed(organization).select_related("action", "requester")
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
            "unreviewed": unreviewed[:SHOWN_UNREVIEWED],
            "unreviewed_count": unreviewed.count(),
        },
    )

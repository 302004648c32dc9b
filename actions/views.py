from itertools import groupby

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from .models import CATEGORY_ORDER, Category, ResponseAction


@login_required
def catalog(request: HttpRequest) -> HttpResponse:
    actions = sorted(
        ResponseAction.objects.filter(active=True),
        key=lambda action: (CATEGORY_ORDER[action.category], action.position),
    )
    groups = [
        {"category": Category(category), "actions": list(members)}
        for category, members in groupby(actions, key=lambda action: action.category)
    ]
    return render(request, "actions/catalog.html", {"groups": groups})


@login_required
def action_detail(request: HttpRequest, key: str) -> HttpResponse:
    action = get_object_or_404(ResponseAction, key=key, active=True)
    return render(request, "actions/action_detail.html", {"action": action})

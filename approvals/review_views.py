"""The pages of break-glass reviews and of undo: the Needs review list, a review, an undo."""

import uuid as uuid_module

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from actions.validators import refuse_invisible
from audit.context import AuditContext
from responseportal.access import get_membership
from responseportal.models import Role

from . import break_glass, services, undo
from .lookups import get_request_for
from .models import ReviewOutcome
from .transitions import TransitionRefused

PAGE_SIZE = 50


class ReviewForm(forms.Form):
    outcome = forms.ChoiceField(
        choices=ReviewOutcome.choices,
        widget=forms.RadioSelect,
        error_messages={
            "required": "Choose accept or flag.",
            "invalid_choice": "`%(value)s` is not a review outcome: expected accept or flag.",
        },
    )
    comment = forms.CharField(
        required=False,
        max_length=2_000,
        validators=[lambda value: refuse_invisible(value, what="The comment")],
        error_messages={
            "max_length": "The comment has %(show_value)d characters: expected at most "
            "%(limit_value)d."
        },
    )


@login_required
def needs_review(request: HttpRequest, slug: str) -> HttpResponse:
    """The organization's break-glass runs that no admin has reviewed yet, oldest first."""
    membership = get_membership(request.user, slug, roles=[Role.ADMIN])
    organization = membership.organization
    runs = break_glass.unreviewed(organization).select_related("action", "requester")
    page = Paginator(runs, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "approvals/needs_review.html",
        {"membership": membership, "organization": organization, "page": page},
    )


@login_required
@require_POST
def review(request: HttpRequest, slug: str, uuid: uuid_module.UUID) -> HttpResponse:
    """Accept or flag a break-glass run, with a comment (required to flag)."""
    _, action_request = get_request_for(request.user, slug, uuid, roles=[Role.ADMIN])
    form = ReviewForm(request.POST)
    if not form.is_valid():
        for problems in form.errors.values():
            for problem in problems:
                messages.error(request, problem)
    else:
        try:
            reviewed = services.review_request(
                action_request.pk,
                actor=request.user,
                outcome=form.cleaned_data["outcome"],
                comment=form.cleaned_data["comment"],
                context=AuditContext.from_request(request),
            )
        except TransitionRefused as refusal:
            messages.error(request, refusal.message)
        else:
            outcome = reviewed.get_review_outcome_display().lower()
            messages.success(request, f"Break-glass run {outcome}: {reviewed.action.name}.")
    return redirect("request_detail", slug, action_request.uuid)


@login_required
@require_POST
def undo_view(request: HttpRequest, slug: str, uuid: uuid_module.UUID) -> HttpResponse:
    """Create the request that undoes this one, and go to it."""
    _, action_request = get_request_for(request.user, slug, uuid, roles=[Role.OPERATOR])
    try:
        created, new = undo.undo_request(
            action_request.pk, actor=request.user, context=AuditContext.from_request(request)
        )
    except TransitionRefused as refusal:
        messages.error(request, refusal.message)
        return redirect("request_detail", slug, action_request.uuid)
    if new:
        messages.success(
            request,
            f"{created.action.name} requested to undo {action_request.action.name}: "
            f"{created.get_status_display().lower()}.",
        )
    else:
        messages.info(
            request,
            "This request is already being undone: here is its undo, "
            f"{created.get_status_display().lower()}.",
        )
    return redirect("request_detail", slug, created.uuid)

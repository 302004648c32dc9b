"""The API tokens pages: a user's own tokens, and an organization's for its admins."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from accounts.stepup import step_up_required
from audit.context import AuditContext
from responseportal.access import get_membership
from responseportal.models import Role
from responseportal.refusals import TransitionRefused

from . import tokens
from .forms import TokenForm
from .models import ApiToken


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
@step_up_required
def token_list(request: HttpRequest) -> HttpResponse:
    """Make a token (its secret is shown on this answer only) and list one's own."""
    form = TokenForm(request.POST or None, user=request.user)
    secret = created = None
    if request.method == "POST" and form.is_valid():
        created, secret = tokens.create_token(
            request.user,
            form.cleaned_data["organization"],
            name=form.cleaned_data["name"],
            days=form.cleaned_data["days"],
            context=AuditContext.from_request(request),
        )
        form = TokenForm(user=request.user)
    return render(
        request,
        "api/tokens.html",
        {
            "form": form,
            "created": created,
            "secret": secret,
            "tokens": ApiToken.objects.filter(user=request.user).select_related("organization"),
        },
    )


@login_required
@require_POST
@step_up_required
def revoke_own(request: HttpRequest, pk: int) -> HttpResponse:
    if not ApiToken.objects.filter(pk=pk, user=request.user).exists():
        raise Http404("No such token.")
    _revoke(request, pk)
    return redirect("api_tokens")


@login_required
@step_up_required
def organization_tokens(request: HttpRequest, slug: str) -> HttpResponse:
    """Every token that can act in the organization: its admins see whose, and its last use."""
    membership = get_membership(request.user, slug, roles=[Role.ADMIN])
    return render(
        request,
        "api/organization_tokens.html",
        {
            "membership": membership,
            "organization": membership.organization,
            "tokens": ApiToken.objects.filter(organization=membership.organization).select_related(
                "user"
            ),
        },
    )


@login_required
@require_POST
@step_up_required
def revoke_in_organization(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    membership = get_membership(request.user, slug, roles=[Role.ADMIN])
    if not ApiToken.objects.filter(pk=pk, organization=membership.organization).exists():
        raise Http404("No such token.")
    _revoke(request, pk)
    return redirect("organization_api_tokens", slug)


def _revoke(request: HttpRequest, pk: int) -> None:
    try:
        token = tokens.revoke_token(
            pk, actor=request.user, context=AuditContext.from_request(request)
        )
    except TransitionRefused as refusal:
        messages.error(request, refusal.message)
    else:
        messages.success(request, f"Revoked the token {token.name}: it no longer works.")

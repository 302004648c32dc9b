from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.stepup import step_up_required
from actions.models import Category, ResponseAction
from audit.context import AuditContext
from responseportal.access import get_membership
from responseportal.models import Role

from . import services
from .models import ApprovalSettings
from .preview import preview, settings_with
from .settings_forms import ApprovalSettingsForm
from .transitions import TransitionRefused


@login_required
@require_http_methods(["GET", "POST"])
# A preview changes nothing: only saving asks for a recent second factor.
@step_up_required(unless=lambda request: "preview" in request.POST)
def approval_settings(request: HttpRequest, slug: str) -> HttpResponse:
    """Every member sees the organization's approval settings; only its admins change them."""
    posted = request.method == "POST"
    membership = get_membership(request.user, slug, roles=[Role.ADMIN] if posted else None)
    organization = membership.organization
    editable = membership.role == Role.ADMIN
    current = ApprovalSettings.for_organization(organization)
    actions = ResponseAction.objects.filter(
        active=True, category__in=[Category.CRITICAL, Category.RECOMMENDED]
    ).order_by("position")
    shown_preview = None
    if posted:
        form = ApprovalSettingsForm(
            request.POST, request.FILES, settings=current, actions=actions, editable=editable
        )
        if form.is_valid() and "preview" in request.POST:
            # Read-only: the form comes back as submitted, nothing is saved or audited.
            shown_preview = preview(organization, settings_with(current, form.values()))
        elif form.is_valid():
            version = form.cleaned_data["version"]
            try:
                saved = services.update_approval_settings(
                    organization,
                    actor=request.user,
                    values=form.values(),
                    version=version,
                    context=AuditContext.from_request(request),
                )
            except TransitionRefused as refusal:
                form.add_error(None, refusal.message)
            else:
                changed = saved.version != version
                messages.success(
                    request, "Approval settings saved." if changed else "Nothing changed."
                )
                return redirect("approval_settings", slug)
    else:
        form = ApprovalSettingsForm(settings=current, actions=actions, editable=editable)
    return render(
        request,
        "approvals/approval_settings.html",
        {
            "organization": organization,
            "membership": membership,
            "settings": current,
            "form": form,
            "editable": editable,
            "preview": shown_preview,
            "files_to_choose_again": shown_preview is not None and bool(request.FILES),
        },
    )

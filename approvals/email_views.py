"""The page an e-mail's Approve or Reject link opens: it shows the request and decides it only
on a POST of its confirmation form, through the same decision path as the request's page."""

import uuid as uuid_module

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from accounts.stepup import step_up_required
from audit.models import Source
from responseportal.models import Role

from . import email_links
from .decision_forms import APPROVE, problems
from .lookups import get_request_for
from .models import ActionRequest, EmailLinkUse
from .services import _approved_before, _no_longer_pending
from .transitions import SeparationOfDuties, lock_request, when
from .views import DECISION_FORMS, _decide, action_request_url, decided_message

NOT_VALID = (
    "This link is not a valid approval link of this portal: it was altered or cut short. "
    "Nothing was done; open the request from your pending queue instead."
)
NOT_YOURS = (
    "This link was sent to another admin and works only for them. Nothing was done; open the "
    "request from your pending queue to decide it yourself."
)
CHANGED = (
    "This request changed after the e-mail was sent: what you read there (its parameters, "
    "targets or expiry) is no longer what would run. Nothing was done; open the request "
    "page to review it as it is now."
)
PAST = {APPROVE: "approved", "reject": "rejected"}


def _stale(action_request: ActionRequest, link: email_links.DecisionLink, user) -> str | None:
    """None if the link may still decide its request; otherwise why not, in words."""
    used = EmailLinkUse.objects.filter(request=action_request, admin=user).first()
    if used is not None:
        return (
            f"This link was already used: you {PAST.get(used.decision, used.decision)} this "
            f"request with it at {when(used.used_at)}. Each link works once."
        )
    if action_request.is_overdue(timezone.now()):
        return (
            f"This request expired at {when(action_request.expires_at)}; "
            "it can no longer be decided."
        )
    if not action_request.is_pending:
        return _no_longer_pending(action_request)
    if action_request.requester_id == user.pk:
        return SeparationOfDuties().message
    if link.digest != email_links.digest(action_request):
        return CHANGED
    if link.decision == APPROVE:
        return _approved_before(action_request, user)
    return None


def _page(request, *, status=200, **context) -> HttpResponse:
    return render(request, "approvals/email_decision.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
@step_up_required
def email_decision(
    request: HttpRequest, slug: str, uuid: uuid_module.UUID, token: str
) -> HttpResponse:
    link = email_links.read(token)
    if link is None or link.request_uuid != uuid or not link.decision:
        return _page(request, status=400, problem=NOT_VALID)
    if link.admin_id != request.user.pk:
        return _page(request, status=403, problem=NOT_YOURS)
    membership, action_request = get_request_for(request.user, slug, uuid, roles=[Role.ADMIN])
    form_class, text = DECISION_FORMS[link.decision]
    context = {
        "membership": membership,
        "organization": membership.organization,
        "req": action_request,
        "decision": link.decision,
        "parameters": action_request.parameter_rows(),
        "targets": action_request.targets.order_by("position"),
    }
    problem = _stale(action_request, link, request.user)
    if problem is not None:
        return _page(
            request, status=409 if request.method == "POST" else 200, problem=problem, **context
        )
    if request.method == "GET":
        return _page(request, form=form_class(), **context)
    form = form_class(request.POST)
    if not form.is_valid():
        return _page(request, status=400, form=form, form_problems=problems(form), **context)
    with transaction.atomic():
        # Re-checked under the request's row lock: a second POST of the same link waits for
        # the first one's commit and then finds the link used.
        action_request = lock_request(action_request.pk)
        problem = _stale(action_request, link, request.user)
        if problem is None:
            problem = _decide(
                request, action_request, link.decision, form.cleaned_data[text], source=Source.EMAIL
            )
        if problem is None:
            EmailLinkUse.objects.create(
                request=action_request, admin=request.user, decision=link.decision
            )
    if problem is not None:
        return _page(request, status=409, problem=problem, **context)
    messages.success(request, decided_message(action_request, link.decision))
    return redirect(action_request_url(slug, action_request))

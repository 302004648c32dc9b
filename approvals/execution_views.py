"""Following a request's execution: its live status, and ending a remote shell session early."""

import uuid as uuid_module

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.utils.formats import date_format
from django.utils.timezone import localtime
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from accounts.stepup import step_up_required
from audit.context import AuditContext
from responseportal.models import Role

from .decision_forms import EndSessionForm, problems
from .execution import steps as execution
from .icons import STATUS_ICONS, TARGET_ICONS
from .lookups import get_request_for
from .transitions import TransitionRefused


def _time(moment) -> dict | None:
    """A moment as the page shows it, and in ISO 8601 for machines."""
    if moment is None:
        return None
    return {"iso": moment.isoformat(), "text": date_format(localtime(moment), "Y-m-d H:i:s T")}


@login_required
@require_GET
@never_cache
def request_status(request: HttpRequest, slug: str, uuid: uuid_module.UUID) -> JsonResponse:
    """The request's status and each target's, for the detail page to follow while it runs."""
    _, action_request = get_request_for(request.user, slug, uuid)
    status = action_request.shown_status
    return JsonResponse(
        {
            "uuid": str(action_request.uuid),
            "status": status.value,
            "status_label": status.label,
            "status_icon": STATUS_ICONS[status],
            "running": action_request.is_running,
            "queued_at": _time(action_request.queued_at),
            "started_at": _time(action_request.started_at),
            "finished_at": _time(action_request.finished_at),
            "execution_attempts": action_request.execution_attempts,
            "active_until": _time(action_request.active_until),
            "ended_at": _time(action_request.ended_at),
            "targets": [
                {
                    "position": target.position,
                    "kind": target.kind,
                    "value": target.value,
                    "status": target.status,
                    "status_label": target.get_status_display(),
                    "status_icon": TARGET_ICONS[target.status],
                    "message": target.message,
                    "finished_at": _time(target.finished_at),
                }
                for target in action_request.targets.order_by("position")
            ],
        }
    )


@login_required
@require_POST
@step_up_required
def end_session(request: HttpRequest, slug: str, uuid: uuid_module.UUID) -> HttpResponse:
    """An admin ends an active remote shell session now, giving a reason."""
    _, action_request = get_request_for(request.user, slug, uuid, roles=[Role.ADMIN])
    form = EndSessionForm(request.POST)
    if not form.is_valid():
        for problem in problems(form):
            messages.error(request, problem)
        return redirect("request_detail", slug, action_request.uuid)
    try:
        execution.end_remote_shell(
            action_request.pk,
            actor=request.user,
            reason=form.cleaned_data["reason"],
            context=AuditContext.from_request(request),
        )
    except TransitionRefused as refusal:
        messages.error(request, refusal.message)
    else:
        messages.success(request, "The remote shell session was ended.")
    return redirect("request_detail", slug, action_request.uuid)

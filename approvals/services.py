"""Every change of a request or of approval settings, one function each.

Each function is one transaction: it locks the row, re-checks the state and the actor's
right to act, changes it, and writes the audit event. Views and tasks call these; nothing
else changes a status.
"""

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.formats import date_format

from actions.models import ResponseAction
from responseportal.models import Membership, Organization, Role

from . import execution, notifications
from .audit import SYSTEM, AuditContext, record
from .decision import decide
from .models import (
    ActionRequest,
    ApprovalMode,
    ApprovalSettings,
    RequestStatus,
    RequestTarget,
    ScopeMode,
    Script,
)


class TransitionRefused(Exception):
    """The request is not in a state that allows this; the message says what happened."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class SubmissionRefused(TransitionRefused):
    """The decision rule refuses the request; nothing was created."""


@dataclass(frozen=True)
class Target:
    kind: str
    value: str


def _role_of(user, organization: Organization, allowed: set[Role], doing: str) -> str:
    role = (
        Membership.objects.filter(user=user, organization=organization)
        .values_list("role", flat=True)
        .first()
    )
    if role not in allowed:
        raise PermissionDenied(f"Your role in {organization.name} does not allow you to {doing}.")
    return role


def _when(moment) -> str:
    return date_format(timezone.localtime(moment), "DATETIME_FORMAT")


def _who(user) -> str:
    return user.get_username() if user is not None else "the system"


def _no_longer_pending(request: ActionRequest) -> str:
    """Why a decision on `request` comes too late, in words for the person who tried."""
    by_whom = f"by {_who(request.decided_by)} at {_when(request.decided_at)}"
    if request.status == RequestStatus.EXPIRED:
        return f"This request expired at {_when(request.decided_at)}; it can no longer be decided."
    if request.status == RequestStatus.CANCELLED:
        return f"This request was cancelled {by_whom}."
    if request.status == RequestStatus.REJECTED:
        return f"This request was already rejected {by_whom}."
    if request.approval_mode != ApprovalMode.MANUAL:
        return f"This request needed no decision ({request.get_approval_mode_display().lower()})."
    return f"This request was already approved {by_whom}."


def lock_request(request_id: int) -> ActionRequest:
    """The request's row, locked until the transaction ends, with what its messages name."""
    return (
        ActionRequest.objects.select_for_update(of=("self",))
        .select_related("organization", "action", "requester", "decided_by", "ended_by")
        .get(pk=request_id)
    )


def _expire(request: ActionRequest) -> None:
    before = request.status
    request.status = RequestStatus.EXPIRED
    request.decided_at = request.expires_at
    request.decided_by = None
    request.save(update_fields=["status", "decided_at", "decided_by"])
    record(
        request.organization,
        "request.expired",
        request=request,
        data={"status": {"before": before, "after": request.status}},
    )
    notifications.schedule(notifications.EXPIRED, request.pk)


def _refusal(request: ActionRequest, now) -> str | None:
    """None if the request may be decided now; otherwise why not (an overdue one is expired)."""
    if request.is_overdue(now):
        _expire(request)
    if not request.is_pending:
        return _no_longer_pending(request)
    return None


def submit_request(
    organization: Organization,
    action: ResponseAction,
    *,
    actor,
    parameters: dict,
    targets: Sequence[Target],
    endpoints: Sequence[str],
    summary: str = "",
    submission_token: uuid.UUID | None = None,
    context: AuditContext = SYSTEM,
) -> ActionRequest:
    """Create a request, approved at once or pending; refused ones raise SubmissionRefused.

    The same `submission_token` submitted twice (a double click) returns the first request.
    """
    if submission_token is not None:
        existing = ActionRequest.objects.filter(submission_token=submission_token).first()
        if existing is not None and existing.requester_id == actor.pk:
            return existing
    try:
        with transaction.atomic():
            return _create_request(
                organization,
                action,
                actor=actor,
                parameters=parameters,
                targets=targets,
                endpoints=endpoints,
                summary=summary,
                submission_token=submission_token,
                context=context,
            )
    except IntegrityError:
        existing = ActionRequest.objects.filter(submission_token=submission_token).first()
        if submission_token is None or existing is None or existing.requester_id != actor.pk:
            raise
        return existing


def _create_request(
    organization,
    action,
    *,
    actor,
    parameters,
    targets,
    endpoints,
    summary,
    submission_token,
    context,
) -> ActionRequest:
    role = _role_of(actor, organization, {Role.OPERATOR}, "submit requests")
    settings = (
        ApprovalSettings.objects.select_for_update().filter(organization=organization).first()
    )
    if settings is None:
        settings = ApprovalSettings.for_organization(organization)
    decision = decide(action, settings, endpoints)
    if decision.refused:
        raise SubmissionRefused(decision.refusal)
    now = timezone.now()
    manual = decision.mode == ApprovalMode.MANUAL
    request = ActionRequest.objects.create(
        organization=organization,
        action=action,
        requester=actor,
        parameters=parameters,
        summary=summary,
        approval_mode=decision.mode,
        status=RequestStatus.PENDING if manual else RequestStatus.APPROVED,
        submitted_at=now,
        expires_at=now + timedelta(hours=settings.pending_lifetime_hours) if manual else None,
        decided_at=None if manual else now,
        submission_token=submission_token,
    )
    RequestTarget.objects.bulk_create(
        RequestTarget(request=request, position=position, kind=target.kind, value=target.value)
        for position, target in enumerate(targets)
    )
    record(
        organization,
        "request.submitted",
        actor=actor,
        role=role,
        request=request,
        data={
            "approval_mode": decision.mode,
            "status": request.status,
            "parameters": parameters,
            "targets": [target.value for target in targets],
            "out_of_scope": list(decision.out_of_scope),
        },
        context=context,
    )
    if decision.mode == ApprovalMode.AUTO:
        record(organization, "request.auto_approved", request=request, context=SYSTEM)
        notifications.schedule(notifications.AUTO_APPROVED, request.pk)
    if manual:
        notifications.schedule(notifications.PENDING, request.pk)
    else:
        execution.queue_after_commit(request.pk)
    return request


def _decide(
    request_id: int,
    *,
    actor,
    verb: str,
    status: RequestStatus,
    reason: str,
    context: AuditContext,
) -> ActionRequest:
    now = timezone.now()
    with transaction.atomic():
        request = lock_request(request_id)
        doing = "approve requests" if status == RequestStatus.APPROVED else "reject requests"
        role = _role_of(actor, request.organization, {Role.ADMIN}, doing)
        if request.requester_id == actor.pk:
            raise PermissionDenied(
                "You submitted this request, so another admin must decide it "
                "(separation of duties)."
            )
        refusal = _refusal(request, now)
        if refusal is None:
            request.status = status
            request.decided_at = now
            request.decided_by = actor
            request.decision_reason = reason
            request.save(update_fields=["status", "decided_at", "decided_by", "decision_reason"])
            record(
                request.organization,
                verb,
                actor=actor,
                role=role,
                request=request,
                data={
                    "status": {"before": RequestStatus.PENDING, "after": status},
                    "reason": reason,
                },
                context=context,
            )
            approved = status == RequestStatus.APPROVED
            notifications.schedule(
                notifications.APPROVED if approved else notifications.REJECTED, request.pk
            )
            if approved:
                execution.queue_after_commit(request.pk)
    if refusal is not None:
        raise TransitionRefused(refusal)
    return request


def approve_request(
    request_id: int, *, actor, comment: str = "", context: AuditContext = SYSTEM
) -> ActionRequest:
    return _decide(
        request_id,
        actor=actor,
        verb="request.approved",
        status=RequestStatus.APPROVED,
        reason=comment.strip(),
        context=context,
    )


def reject_request(
    request_id: int, *, actor, reason: str, context: AuditContext = SYSTEM
) -> ActionRequest:
    if not reason.strip():
        raise TransitionRefused("Give a reason for rejecting: the requester will read it.")
    return _decide(
        request_id,
        actor=actor,
        verb="request.rejected",
        status=RequestStatus.REJECTED,
        reason=reason.strip(),
        context=context,
    )


def cancel_request(request_id: int, *, actor, context: AuditContext = SYSTEM) -> ActionRequest:
    now = timezone.now()
    with transaction.atomic():
        request = lock_request(request_id)
        if request.requester_id != actor.pk:
            raise PermissionDenied("Only the operator who submitted a request can cancel it.")
        role = _role_of(actor, request.organization, set(Role), "cancel requests")
        refusal = _refusal(request, now)
        if refusal is None:
            request.status = RequestStatus.CANCELLED
            request.decided_at = now
            request.decided_by = actor
            request.save(update_fields=["status", "decided_at", "decided_by"])
            record(
                request.organization,
                "request.cancelled",
                actor=actor,
                role=role,
                request=request,
                data={"status": {"before": RequestStatus.PENDING, "after": request.status}},
                context=context,
            )
    if refusal is not None:
        raise TransitionRefused(refusal)
    return request


def expire_request(request_id: int) -> bool:
    """Mark one overdue pending request expired; False if it was not (or no longer) overdue."""
    with transaction.atomic():
        request = lock_request(request_id)
        if not request.is_overdue():
            return False
        _expire(request)
        return True


def expire_overdue_requests() -> int:
    """Expire every pending request past its expiry time; returns how many."""
    overdue = ActionRequest.objects.filter(
        status=RequestStatus.PENDING, expires_at__lte=timezone.now()
    ).values_list("pk", flat=True)
    return sum(expire_request(pk) for pk in list(overdue))


SETTINGS_FIELDS = (
    "auto_approval_enabled",
    "auto_approved_actions",
    "scope_mode",
    "pending_lifetime_hours",
    "remote_shell_validity_hours",
    "notify_emails",
    "notify_webhook_url",
)
SCOPE_LISTS = ("scope_selected", "scope_exceptions")


class StaleSettings(TransitionRefused):
    """The settings changed since the form was opened."""


def settings_problem(settings: ApprovalSettings) -> str:
    """What makes these settings unusable, or "" if nothing does."""
    if settings.auto_approval_enabled and not settings.auto_approved_actions:
        return (
            "With automatic approval on, tick at least one action to approve automatically, "
            "or turn automatic approval off."
        )
    if settings.scope_mode == ScopeMode.SELECTED and not settings.scope_selected:
        return (
            "Selected endpoints only needs at least one endpoint: import a CSV file of them, "
            "or choose all endpoints."
        )
    return ""


def update_approval_settings(
    organization: Organization,
    *,
    actor,
    values: dict,
    version: int,
    context: AuditContext = SYSTEM,
) -> ApprovalSettings:
    """Save new approval settings; `version` is the one the admin's form was opened at.

    Writes `settings.changed` with the before and after values of what changed, and one
    `scope.imported` per replaced endpoint list with the endpoints added and removed.
    """
    with transaction.atomic():
        role = _role_of(actor, organization, {Role.ADMIN}, "change approval settings")
        settings = ApprovalSettings.objects.select_for_update().filter(
            organization=organization
        ).first() or ApprovalSettings.for_organization(organization)
        if settings.version != version:
            raise StaleSettings(
                "Someone changed these settings after you opened the page "
                f"(at {_when(settings.updated_at)}). Review the current settings and save again."
            )
        changes = {
            name: {"before": getattr(settings, name), "after": values[name]}
            for name in SETTINGS_FIELDS
            if name in values and getattr(settings, name) != values[name]
        }
        imports = {
            name: (set(getattr(settings, name)), values[name])
            for name in SCOPE_LISTS
            if name in values and getattr(settings, name) != values[name]
        }
        if not changes and not imports:
            return settings
        for name in [*changes, *imports]:
            setattr(settings, name, values[name])
        problem = settings_problem(settings)
        if problem:
            raise TransitionRefused(problem)
        settings.version += 1
        settings.save()
        for name, (before, after) in imports.items():
            record(
                organization,
                "scope.imported",
                actor=actor,
                role=role,
                data={
                    "list": name,
                    "count": {"before": len(before), "after": len(after)},
                    "added": sorted(set(after) - before),
                    "removed": sorted(before - set(after)),
                },
                context=context,
            )
        if changes:
            record(
                organization,
                "settings.changed",
                actor=actor,
                role=role,
                data=changes,
                context=context,
            )
        return settings


def upload_script(
    organization: Organization,
    *,
    actor,
    name: str,
    language: str,
    content: str,
    context: AuditContext = SYSTEM,
) -> Script:
    """Add a script to the organization's library, stored with its SHA-256."""
    duplicate = TransitionRefused(f"The library already has a script named `{name}`.")
    with transaction.atomic():
        role = _role_of(actor, organization, {Role.OPERATOR}, "upload scripts")
        if Script.objects.filter(organization=organization, name=name).exists():
            raise duplicate
        encoded = content.encode()
        try:
            # Two uploads of one name at once: the unique constraint decides, as a refusal.
            with transaction.atomic():
                script = Script.objects.create(
                    organization=organization,
                    name=name,
                    language=language,
                    content=content,
                    sha256=hashlib.sha256(encoded).hexdigest(),
                    size=len(encoded),
                    uploaded_by=actor,
                )
        except IntegrityError:
            raise duplicate from None
        record(
            organization,
            "script.uploaded",
            actor=actor,
            role=role,
            data={"name": name, "language": language, "sha256": script.sha256, "size": script.size},
            context=context,
        )
        return script

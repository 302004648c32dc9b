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

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from actions.models import ResponseAction
from actions.validators import shown
from audit.chain import record
from audit.context import SYSTEM, AuditContext
from responseportal.http import masked_url
from responseportal.models import Organization, Role

from . import break_glass as break_glass_rules
from . import notifications
from .decision import decide
from .execution.steps import queue_after_commit, queue_locked
from .models import (
    ActionRequest,
    Approval,
    ApprovalMode,
    ApprovalSettings,
    RequestStatus,
    RequestTarget,
    ReviewOutcome,
    ScopeMode,
    Script,
)
from .transitions import (
    SeparationOfDuties,
    SubmissionRefused,
    TransitionRefused,
    lock_request,
    role_of,
    when,
    who,
)


@dataclass(frozen=True)
class Target:
    kind: str
    value: str


def _no_longer_pending(action_request: ActionRequest) -> str:
    """Why a decision on `action_request` comes too late, in words for the person who tried."""
    decided_at = when(action_request.decided_at)
    by_whom = f"by {who(action_request.decided_by)} at {decided_at}"
    if action_request.status == RequestStatus.EXPIRED:
        return f"This request expired at {decided_at}; it can no longer be decided."
    if action_request.status == RequestStatus.CANCELLED:
        return f"This request was cancelled {by_whom}."
    if action_request.status == RequestStatus.REJECTED:
        return f"This request was already rejected {by_whom}."
    if action_request.approval_mode != ApprovalMode.MANUAL:
        mode = action_request.get_approval_mode_display().lower()
        return f"This request needed no decision ({mode})."
    return f"This request was already approved {by_whom}."


def _expire(action_request: ActionRequest) -> None:
    before = action_request.status
    action_request.status = RequestStatus.EXPIRED
    action_request.decided_at = action_request.expires_at
    action_request.decided_by = None
    action_request.save(update_fields=["status", "decided_at", "decided_by"])
    record(
        action_request.organization,
        "request.expired",
        action_request=action_request,
        data={"status": {"before": before, "after": action_request.status}},
    )
    notifications.schedule(notifications.EXPIRED, action_request)


def _refusal(action_request: ActionRequest, now) -> str | None:
    """None if the request may be decided now; otherwise why not (an overdue one is expired)."""
    if action_request.is_overdue(now):
        _expire(action_request)
    if not action_request.is_pending:
        return _no_longer_pending(action_request)
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
    break_glass: bool = False,
    justification: str = "",
    undoes: ActionRequest | None = None,
    context: AuditContext = SYSTEM,
) -> ActionRequest:
    """Create a request, approved at once or pending; refused ones raise SubmissionRefused.

    With `break_glass` (and a `justification`), an allowed request runs at once, the admins
    are told, and it waits for an admin's review. `undoes` links the request it reverses.

    The same `submission_token` submitted twice (a double click) returns the first request.
    A token counts per user, organization and action: the same token from another operator,
    or in another organization's or action's form, makes that submission's own request.
    """
    key = _submission_key(submission_token, actor, organization, action)
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
                submission_token=key,
                break_glass=break_glass,
                justification=justification,
                undoes=undoes,
                context=context,
            )
    except (IntegrityError, SubmissionRefused):
        # A form submitted again (a double click, or twice at the same moment): the unique
        # key refused the second request and nothing of it was written; or the rules refuse
        # the repeat now (the settings changed since the first click). Either way the token
        # leads to the first request. It is looked up only here, so a submission costs no read.
        existing = (
            ActionRequest.objects.filter(submission_token=key).first() if key is not None else None
        )
        if existing is None:
            raise
        return existing


def _submission_key(token: uuid.UUID | None, actor, organization, action) -> uuid.UUID | None:
    """What is stored for a form's token: derived from it and from who submits it where, so
    that one token can never name another user's, organization's or action's request."""
    if token is None:
        return None
    return uuid.uuid5(token, f"{actor.pk}/{organization.pk}/{action.key}")


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
    break_glass,
    justification,
    undoes,
    context,
) -> ActionRequest:
    role = role_of(actor, organization, {Role.OPERATOR}, "submit requests")
    settings = ApprovalSettings.for_organization(organization, lock=True)
    decision = decide(action, settings, endpoints, break_glass=break_glass)
    if decision.refused:
        raise SubmissionRefused(decision.refusal)
    if decision.mode == ApprovalMode.BREAK_GLASS:
        try:
            justification = break_glass_rules.cleaned_justification(justification)
        except ValidationError as problem:
            raise SubmissionRefused(problem.messages[0]) from None
    else:
        justification = ""
    now = timezone.now()
    manual = decision.mode == ApprovalMode.MANUAL
    action_request = ActionRequest.objects.create(
        organization=organization,
        action=action,
        requester=actor,
        parameters=parameters,
        summary=summary,
        approval_mode=decision.mode,
        approvals_needed=decision.approvals_needed,
        status=RequestStatus.PENDING if manual else RequestStatus.APPROVED,
        submitted_at=now,
        expires_at=now + timedelta(hours=settings.pending_lifetime_hours) if manual else None,
        decided_at=None if manual else now,
        submission_token=submission_token,
        justification=justification,
        undoes=undoes,
    )
    RequestTarget.objects.bulk_create(
        RequestTarget(
            request=action_request, position=position, kind=target.kind, value=target.value
        )
        for position, target in enumerate(targets)
    )
    record(
        organization,
        "request.submitted",
        actor=actor,
        role=role,
        action_request=action_request,
        data={
            "approval_mode": decision.mode,
            "status": action_request.status,
            "parameters": parameters,
            "targets": [target.value for target in targets],
            "out_of_scope": list(decision.out_of_scope),
            **({"undoes": str(undoes.uuid)} if undoes is not None else {}),
        },
        context=context,
    )
    if decision.mode == ApprovalMode.BREAK_GLASS:
        record(
            organization,
            "request.break_glass",
            actor=actor,
            role=role,
            action_request=action_request,
            data={"justification": justification},
            context=context,
        )
        notifications.schedule(
            notifications.BREAK_GLASS, action_request, approval_settings=settings
        )
    if decision.mode == ApprovalMode.AUTO:
        record(organization, "request.auto_approved", action_request=action_request, context=SYSTEM)
        notifications.schedule(
            notifications.AUTO_APPROVED, action_request, approval_settings=settings
        )
    if manual:
        notifications.schedule(notifications.PENDING, action_request, approval_settings=settings)
    else:
        # Still inside this transaction, which holds the new row: queued with it, sent on commit.
        queue_locked(action_request)
    return action_request


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
        action_request = lock_request(request_id)
        doing = "approve requests" if status == RequestStatus.APPROVED else "reject requests"
        role = role_of(actor, action_request.organization, {Role.ADMIN}, doing)
        if action_request.requester_id == actor.pk:
            raise SeparationOfDuties()
        refusal = _refusal(action_request, now)
        approving = status == RequestStatus.APPROVED
        if refusal is None and approving:
            refusal = _approved_before(action_request, actor)
        if (
            refusal is None
            and approving
            and not _add_approval_completes(
                action_request, actor=actor, role=role, comment=reason, context=context, now=now
            )
        ):
            return action_request
        if refusal is None:
            action_request.status = status
            action_request.decided_at = now
            action_request.decided_by = actor
            action_request.decision_reason = reason
            action_request.save(
                update_fields=["status", "decided_at", "decided_by", "decision_reason"]
            )
            record(
                action_request.organization,
                verb,
                actor=actor,
                role=role,
                action_request=action_request,
                data={
                    "status": {"before": RequestStatus.PENDING, "after": status},
                    "reason": reason,
                },
                context=context,
            )
            approved = status == RequestStatus.APPROVED
            notifications.schedule(
                notifications.APPROVED if approved else notifications.REJECTED, action_request
            )
            if approved:
                queue_after_commit(action_request.pk)
    if refusal is not None:
        raise TransitionRefused(refusal)
    return action_request


def _approved_before(action_request: ActionRequest, actor) -> str | None:
    """None unless `actor` already approved the pending request; then why they cannot again."""
    earlier = Approval.objects.filter(request=action_request, admin=actor).first()
    if earlier is None:
        return None
    given = action_request.approvals.count()
    return (
        f"You already approved this request at {when(earlier.approved_at)}: each admin "
        f"counts once. It has {given} of the {action_request.approvals_needed} approvals it "
        "needs and waits for another admin."
    )


def _add_approval_completes(
    action_request: ActionRequest, *, actor, role: str, comment: str, context, now
) -> bool:
    """Record `actor`'s approval of the locked, pending request. True if it is the last one
    needed (the caller then approves the request); else the request stays pending and the
    approval is audited as `request.approval_added`."""
    Approval.objects.create(
        request=action_request,
        admin=actor,
        approved_at=now,
        comment=comment,
        source=context.source,
    )
    given = action_request.approvals.count()
    if given >= action_request.approvals_needed:
        return True
    record(
        action_request.organization,
        "request.approval_added",
        actor=actor,
        role=role,
        action_request=action_request,
        data={
            "approvals": {"given": given, "needed": action_request.approvals_needed},
            "comment": comment,
        },
        context=context,
    )
    return False


REASON_REQUIRED = "Give a reason for rejecting: the requester will read it."


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
        raise TransitionRefused(REASON_REQUIRED)
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
        action_request = lock_request(request_id)
        if action_request.requester_id != actor.pk:
            raise PermissionDenied("Only the operator who submitted a request can cancel it.")
        role = role_of(actor, action_request.organization, set(Role), "cancel requests")
        refusal = _refusal(action_request, now)
        if refusal is None:
            action_request.status = RequestStatus.CANCELLED
            action_request.decided_at = now
            action_request.decided_by = actor
            action_request.save(update_fields=["status", "decided_at", "decided_by"])
            record(
                action_request.organization,
                "request.cancelled",
                actor=actor,
                role=role,
                action_request=action_request,
                data={"status": {"before": RequestStatus.PENDING, "after": action_request.status}},
                context=context,
            )
    if refusal is not None:
        raise TransitionRefused(refusal)
    return action_request


REVIEW_COMMENT_REQUIRED = (
    "Give a comment when you flag a break-glass run: say what was wrong, for the record."
)


def review_request(
    request_id: int, *, actor, outcome: str, comment: str = "", context: AuditContext = SYSTEM
) -> ActionRequest:
    """An admin's review of a break-glass run, once: accepted, or flagged with a comment."""
    comment = comment.strip()
    if outcome not in ReviewOutcome.values:
        raise TransitionRefused(
            f"`{shown(outcome)}` is not a review outcome: expected accept or flag."
        )
    if outcome == ReviewOutcome.FLAG and not comment:
        raise TransitionRefused(REVIEW_COMMENT_REQUIRED)
    with transaction.atomic():
        action_request = lock_request(request_id)
        role = role_of(actor, action_request.organization, {Role.ADMIN}, "review break-glass runs")
        if action_request.requester_id == actor.pk:
            raise TransitionRefused(
                "You submitted this request, so another admin must review it "
                "(separation of duties)."
            )
        if not action_request.is_break_glass:
            raise TransitionRefused("This request did not break glass: there is nothing to review.")
        if action_request.reviewed_at is not None:
            raise TransitionRefused(
                f"This break-glass run was already reviewed by {who(action_request.reviewed_by)} "
                f"at {when(action_request.reviewed_at)}: "
                f"{action_request.get_review_outcome_display().lower()}."
            )
        action_request.reviewed_at = timezone.now()
        action_request.reviewed_by = actor
        action_request.review_outcome = outcome
        action_request.review_comment = comment
        action_request.save(
            update_fields=["reviewed_at", "reviewed_by", "review_outcome", "review_comment"]
        )
        record(
            action_request.organization,
            "request.reviewed",
            actor=actor,
            role=role,
            action_request=action_request,
            data={"outcome": outcome, "comment": comment},
            context=context,
        )
    return action_request


def expire_request(request_id: int) -> bool:
    """Mark one overdue pending request expired; False if it was not (or no longer) overdue."""
    with transaction.atomic():
        action_request = lock_request(request_id)
        if not action_request.is_overdue():
            return False
        _expire(action_request)
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
    "remind_after_minutes",
    "digest_minutes",
    "notify_emails",
    "notify_webhook_url",
    "approvals_needed",
    "break_glass_enabled",
    "break_glass_actions",
)
SCOPE_LISTS = ("scope_selected", "scope_exceptions")


class StaleSettings(TransitionRefused):
    """The settings changed since the form was opened."""


def _stale(settings: ApprovalSettings) -> StaleSettings:
    return StaleSettings(
        "Someone changed these settings after you opened the page "
        f"(at {when(settings.updated_at)}). Review the current settings and save again."
    )


def settings_problem(settings: ApprovalSettings) -> str:
    """What makes these settings unusable, or "" if nothing does."""
    if settings.auto_approval_enabled and not settings.auto_approved_actions:
        return (
            "With automatic approval on, tick at least one action to approve automatically, "
            "or turn automatic approval off."
        )
    if settings.break_glass_enabled and not settings.break_glass_actions:
        return (
            "With break-glass allowed, tick at least one action operators may break glass "
            "for, or disallow break-glass."
        )
    if settings.scope_mode == ScopeMode.SELECTED and not settings.scope_selected:
        return (
            "Selected endpoints only needs at least one endpoint: import a CSV file of them, "
            "or choose all endpoints."
        )
    latest = latest_reminder(settings.pending_lifetime_hours)
    if settings.remind_after_minutes > latest:
        return (
            f"A reminder after {settings.remind_after_minutes} minutes comes too late for "
            f"requests that expire after {settings.pending_lifetime_hours} hours: the last "
            "reminder goes when a quarter of that time is left. Expected at most "
            f"{latest} minutes, or 0 for no reminders."
        )
    return ""


def latest_reminder(pending_lifetime_hours: int) -> int:
    """The latest first reminder, in minutes, for requests waiting that many hours: before
    the last one, sent when a quarter of the lifetime is left."""
    return (pending_lifetime_hours * 60 * 3 - 1) // 4


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
        role = role_of(actor, organization, {Role.ADMIN}, "change approval settings")
        settings = ApprovalSettings.for_organization(organization, lock=True)
        if settings.version != version:
            raise _stale(settings)
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
        if settings.pk is None:
            # The first save has no row to lock: of two admins saving at once, the unique
            # organization keeps one, and the other is told as on any later save.
            try:
                with transaction.atomic():
                    settings.save()
            except IntegrityError:
                raise _stale(ApprovalSettings.objects.get(organization=organization)) from None
        else:
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
            if "notify_webhook_url" in changes:  # often a secret: the log keeps its host only
                changes["notify_webhook_url"] = {
                    when: masked_url(url) for when, url in changes["notify_webhook_url"].items()
                }
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
        role = role_of(actor, organization, {Role.OPERATOR}, "upload scripts")
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

"""Running approved requests: every step of execution, one function each.

Like `services.py`, each step is one transaction that locks the request, re-checks its state,
changes it, writes the audit event, and defers side effects (sending the task, e-mail) with
`transaction.on_commit`. The task in `tasks.py` strings the steps together; a step that
finds the request already past it does nothing, so a duplicate or late delivery is harmless.
"""

import logging
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from actions.executors import Job, JobTarget
from responseportal.models import Role

from . import notifications, services
from .audit import SYSTEM, AuditContext, record
from .models import ActionRequest, ApprovalSettings, RequestStatus, RequestTarget, TargetStatus
from .state import START_REMOTE_SHELL

logger = logging.getLogger(__name__)

RUNNING = frozenset({RequestStatus.APPROVED, RequestStatus.QUEUED, RequestStatus.IN_PROGRESS})
FINISHED = frozenset(
    {
        RequestStatus.SUCCESSFUL,
        RequestStatus.PARTIALLY_SUCCESSFUL,
        RequestStatus.FAILED,
        RequestStatus.TERMINATED,
    }
)
UNFINISHED_TARGETS = frozenset({TargetStatus.WAITING, TargetStatus.IN_PROGRESS})
FINISHED_VERBS = {
    RequestStatus.SUCCESSFUL: "execution.succeeded",
    RequestStatus.PARTIALLY_SUCCESSFUL: "execution.partially_succeeded",
    RequestStatus.FAILED: "execution.failed",
    RequestStatus.TERMINATED: "execution.terminated",
}
NO_RESULT = "The executor gave no result for this target."


def send(request_id: int) -> bool:
    """Hand the request to the workers; False (logged) if the broker cannot take it now.

    A request that could not be sent stays queued, and `redispatch_stranded` sends it again.
    """
    from . import tasks

    try:
        tasks.execute_request.delay(request_id)
    except Exception:
        logger.exception(
            "Request %s could not be sent to the workers; it stays queued and the periodic "
            "re-send (dispatch_stranded) will deliver it.",
            request_id,
        )
        return False
    return True


def queue_request(request_id: int) -> bool:
    """Approved → queued, and send it to the workers after commit; False if not approved."""
    with transaction.atomic():
        request = services.lock_request(request_id)
        if request.status != RequestStatus.APPROVED:
            return False
        request.status = RequestStatus.QUEUED
        request.queued_at = timezone.now()
        request.save(update_fields=["status", "queued_at"])
        record(
            request.organization,
            "execution.queued",
            request=request,
            data={"status": {"before": RequestStatus.APPROVED, "after": request.status}},
        )
        transaction.on_commit(partial(send, request.pk))
    return True


def queue_after_commit(request_id: int) -> None:
    """Queue the request once the transaction that approved it has committed."""
    transaction.on_commit(partial(queue_request, request_id))


def start_execution(request_id: int) -> Job | None:
    """Queued → in progress (or resume one in progress); the job for its unfinished targets.

    None when there is nothing to do: the request is finished, or not yet queued.
    """
    with transaction.atomic():
        request = services.lock_request(request_id)
        if request.status not in {RequestStatus.QUEUED, RequestStatus.IN_PROGRESS}:
            return None
        now = timezone.now()
        before = request.status
        request.execution_attempts += 1
        if before == RequestStatus.QUEUED:
            request.status = RequestStatus.IN_PROGRESS
            request.started_at = now
        request.save(update_fields=["status", "started_at", "execution_attempts"])
        request.targets.filter(status=TargetStatus.WAITING).update(status=TargetStatus.IN_PROGRESS)
        targets = [
            JobTarget(id=t.pk, position=t.position, kind=t.kind, value=t.value)
            for t in request.targets.filter(status__in=UNFINISHED_TARGETS).order_by("position")
        ]
        if before == RequestStatus.QUEUED:
            verb = "execution.started"
            data = {"status": {"before": before, "after": request.status}}
        else:
            # A retry, or a delivery again after a worker was lost: finish what is left.
            verb = "execution.resumed"
            data = {"status": request.status, "targets_left": len(targets)}
        data["attempt"] = request.execution_attempts
        data["executor"] = settings.RESPONSE_EXECUTOR
        record(request.organization, verb, request=request, data=data)
        return Job(
            request_id=request.pk,
            idempotency_key=request.uuid,
            action=request.action.key,
            parameters=request.parameters,
            targets=targets,
            organization=request.organization.slug,
        )


def finish_target(target_id: int, *, succeeded: bool, message: str = "") -> bool:
    """Record one target's result; False if it already had one (a duplicate delivery)."""
    with transaction.atomic():
        target = RequestTarget.objects.select_for_update().get(pk=target_id)
        if target.status not in UNFINISHED_TARGETS:
            return False
        target.status = TargetStatus.SUCCESSFUL if succeeded else TargetStatus.FAILED
        target.message = message
        target.finished_at = timezone.now()
        target.save(update_fields=["status", "message", "finished_at"])
        return True


def outcome(statuses: list[str]) -> RequestStatus:
    """The request's status from its targets' statuses: the least successful it can claim."""
    succeeded = [status == TargetStatus.SUCCESSFUL for status in statuses]
    if all(succeeded):
        return RequestStatus.SUCCESSFUL
    if any(succeeded):
        return RequestStatus.PARTIALLY_SUCCESSFUL
    if TargetStatus.FAILED in statuses:
        return RequestStatus.FAILED
    return RequestStatus.TERMINATED


def finish_execution(
    request_id: int, *, unfinished: TargetStatus = TargetStatus.FAILED, message: str = NO_RESULT
) -> ActionRequest:
    """In progress → successful, partially successful, failed or terminated.

    Targets still without a result get `unfinished` and `message` (the executor gave up on
    them, or never answered for them). A request already finished is left as it is.
    """
    with transaction.atomic():
        request = services.lock_request(request_id)
        if request.status != RequestStatus.IN_PROGRESS:
            return request
        now = timezone.now()
        request.targets.filter(status__in=UNFINISHED_TARGETS).update(
            status=unfinished, message=message, finished_at=now
        )
        results = list(request.targets.order_by("position").values("value", "status", "message"))
        request.status = outcome([result["status"] for result in results])
        request.finished_at = now
        if request.action.key == START_REMOTE_SHELL and request.status == RequestStatus.SUCCESSFUL:
            validity = ApprovalSettings.for_organization(request.organization)
            request.active_until = now + timedelta(hours=validity.remote_shell_validity_hours)
        request.save(update_fields=["status", "finished_at", "active_until"])
        record(
            request.organization,
            FINISHED_VERBS[request.status],
            request=request,
            data={
                "status": {"before": RequestStatus.IN_PROGRESS, "after": request.status},
                "attempts": request.execution_attempts,
                "targets": results,
                **({"active_until": request.active_until} if request.active_until else {}),
            },
        )
        notifications.schedule(notifications.FINISHED, request.pk)
        return request


def _why_not_active(request: ActionRequest, now: datetime) -> str | None:
    """None if `request` is a remote shell session in force; otherwise why it is not."""
    if request.action.key != START_REMOTE_SHELL:
        return f"Only a remote shell session can be ended; this request is {request.action.name}."
    if request.status in RUNNING:
        return (
            f"This session has not started yet (the request is {request.get_status_display()}"
            "); it can be ended once it is active."
        )
    if request.status != RequestStatus.SUCCESSFUL:
        return f"This session never started: the request is {request.get_status_display()}."
    if request.ended_at is not None:
        when = services._when(request.ended_at)
        if request.ended_by is None:
            return f"This session already ended at {when}: its validity period was over."
        return f"This session was already ended at {when} by {request.ended_by.get_username()}."
    return None


def end_remote_shell(
    request_id: int, *, actor, reason: str, context: AuditContext = SYSTEM
) -> ActionRequest:
    """An admin ends an active remote shell session before its validity period is over."""
    reason = reason.strip()
    if not reason:
        raise services.TransitionRefused(
            "Give a reason for ending the session: it is kept with the request."
        )
    now = timezone.now()
    with transaction.atomic():
        request = services.lock_request(request_id)
        role = services._role_of(
            actor, request.organization, {Role.ADMIN}, "end remote shell sessions"
        )
        if _is_overdue_shell(request, now):
            _expire_shell(request)
        refusal = _why_not_active(request, now)
        if refusal is None:
            request.ended_at = now
            request.ended_by = actor
            request.end_reason = reason
            request.save(update_fields=["ended_at", "ended_by", "end_reason"])
            record(
                request.organization,
                "remote_shell.ended",
                actor=actor,
                role=role,
                request=request,
                data={"reason": reason, "active_until": request.active_until, "ended_at": now},
                context=context,
            )
    if refusal is not None:
        raise services.TransitionRefused(refusal)
    return request


SHELL_EXPIRED = "Its validity period ended."


def _is_overdue_shell(request: ActionRequest, now: datetime) -> bool:
    return (
        request.action.key == START_REMOTE_SHELL
        and request.status == RequestStatus.SUCCESSFUL
        and request.ended_at is None
        and request.active_until is not None
        and request.active_until <= now
    )


def _expire_shell(request: ActionRequest) -> None:
    request.ended_at = request.active_until
    request.ended_by = None
    request.end_reason = SHELL_EXPIRED
    request.save(update_fields=["ended_at", "ended_by", "end_reason"])
    record(
        request.organization,
        "remote_shell.expired",
        request=request,
        data={"active_until": request.active_until},
    )


def expire_remote_shell(request_id: int) -> bool:
    """End one remote shell session past its validity; False if it was not (or no longer)."""
    with transaction.atomic():
        request = services.lock_request(request_id)
        if not _is_overdue_shell(request, timezone.now()):
            return False
        _expire_shell(request)
        return True


def expire_remote_shells() -> int:
    """End every remote shell session past its validity period; returns how many."""
    overdue = ActionRequest.objects.filter(
        action__key=START_REMOTE_SHELL,
        status=RequestStatus.SUCCESSFUL,
        ended_at__isnull=True,
        active_until__lte=timezone.now(),
    ).values_list("pk", flat=True)
    return sum(expire_remote_shell(pk) for pk in list(overdue))


def _waiting_since(request: ActionRequest) -> datetime | None:
    return {
        RequestStatus.APPROVED: request.decided_at,
        RequestStatus.QUEUED: request.queued_at,
        RequestStatus.IN_PROGRESS: request.started_at,
    }.get(request.status)


def _stranded(request: ActionRequest, now: datetime, waited: timedelta, idle: timedelta) -> bool:
    since = _waiting_since(request)
    if since is None:
        return False
    if request.status != RequestStatus.IN_PROGRESS:
        return since <= now - waited
    # In progress, with no trace of activity for longer than any attempt can take.
    cutoff = now - idle
    return (
        since <= cutoff
        and not request.targets.filter(finished_at__gt=cutoff).exists()
        and not request.events.filter(timestamp__gt=cutoff).exists()
    )


def redispatch_request(request_id: int, *, waited: timedelta, idle: timedelta) -> bool:
    """Send again a request whose message was lost; False if it is not (or no longer) stranded.

    Approved but never queued, or queued, for longer than `waited`; or in progress with no
    activity for longer than `idle` (its worker and its message were both lost).
    """
    now = timezone.now()
    with transaction.atomic():
        request = services.lock_request(request_id)
        if not _stranded(request, now, waited, idle):
            return False
        since = _waiting_since(request)
        data = {
            "status": request.status,
            "waiting_since": since,
            "waited_seconds": int((now - since).total_seconds()),
        }
        if request.status == RequestStatus.APPROVED:
            data["status"] = {"before": RequestStatus.APPROVED, "after": RequestStatus.QUEUED}
            request.status = RequestStatus.QUEUED
        if request.status == RequestStatus.QUEUED:
            # The next re-send, if this one is lost too, waits as long again.
            request.queued_at = now
            request.save(update_fields=["status", "queued_at"])
        record(request.organization, "execution.redispatched", request=request, data=data)
        transaction.on_commit(partial(send, request.pk))
        return True


def redispatch_stranded(*, waited: timedelta | None = None, idle: timedelta | None = None) -> int:
    """Send again every request stranded by a lost message or a lost worker; returns how many."""
    if waited is None:
        waited = timedelta(seconds=settings.EXECUTION_REDISPATCH_AFTER)
    if idle is None:
        idle = timedelta(seconds=settings.EXECUTION_STALLED_AFTER)
    now = timezone.now()
    candidates = (
        ActionRequest.objects.filter(status=RequestStatus.APPROVED, decided_at__lte=now - waited)
        | ActionRequest.objects.filter(status=RequestStatus.QUEUED, queued_at__lte=now - waited)
        | ActionRequest.objects.filter(status=RequestStatus.IN_PROGRESS, started_at__lte=now - idle)
    )
    pks = list(candidates.order_by("pk").values_list("pk", flat=True))
    return sum(redispatch_request(pk, waited=waited, idle=idle) for pk in pks)

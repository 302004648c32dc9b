"""Running approved requests: every step of execution, one function each.

Like the functions of `approvals/services.py`, each step is one transaction that locks the
request, re-checks its state, changes it, writes the audit event, and defers side effects
(sending the task, e-mail) with `transaction.on_commit`. The task in `tasks.py` strings the
steps together; a step that finds the request already past it does nothing, so a duplicate or
late delivery is harmless.
"""

import logging
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from actions.catalog import START_REMOTE_SHELL
from audit.chain import append, json_data, record
from audit.context import SYSTEM, AuditContext
from audit.models import AuditEvent
from responseportal.models import Role

from .. import notifications
from ..models import (
    UNFINISHED_TARGETS,
    ActionRequest,
    ApprovalSettings,
    RequestStatus,
    RequestTarget,
    TargetStatus,
)
from ..transitions import TransitionRefused, lock_request, role_of, when, who
from .executors import Job, JobTarget, TargetResult

logger = logging.getLogger(__name__)

FINISHED_VERBS = {
    RequestStatus.SUCCESSFUL: "execution.succeeded",
    RequestStatus.PARTIALLY_SUCCESSFUL: "execution.partially_succeeded",
    RequestStatus.FAILED: "execution.failed",
    RequestStatus.TERMINATED: "execution.terminated",
}
NO_RESULT = "The executor gave no result for this target."


def send(request_id: int, *, countdown: float | None = None) -> bool:
    """Hand the request to the workers (after `countdown` seconds); False (logged) if the
    broker cannot take it now.

    A request that could not be sent stays as it is, and `redispatch_stranded` sends it again.
    """
    from . import tasks  # a lazy import: the tasks module imports this one

    try:
        if countdown is None:
            tasks.execute_request.delay(request_id)
        else:
            tasks.execute_request.apply_async((request_id,), countdown=countdown)
    except Exception:
        logger.exception(
            "Request %s could not be sent to the workers; it stays queued and the periodic "
            "re-send (dispatch_stranded) will deliver it.",
            request_id,
        )
        return False
    return True


def queue_locked(action_request: ActionRequest) -> None:
    """Approved → queued for a request the caller holds locked, in the caller's transaction.

    Records "execution.queued" and sends the request to the workers once that transaction
    commits (so a rollback sends nothing). The caller has checked it is approved.
    """
    if action_request.status != RequestStatus.APPROVED:
        raise ValueError(f"Request {action_request.pk} is {action_request.status}, not approved.")
    action_request.status = RequestStatus.QUEUED
    action_request.queued_at = timezone.now()
    action_request.save(update_fields=["status", "queued_at"])
    record(
        action_request.organization,
        "execution.queued",
        action_request=action_request,
        data={"status": {"before": RequestStatus.APPROVED, "after": action_request.status}},
    )
    transaction.on_commit(partial(send, action_request.pk))


def queue_request(request_id: int) -> bool:
    """Approved → queued, and send it to the workers after commit; False if not approved."""
    with transaction.atomic():
        action_request = lock_request(request_id)
        if action_request.status != RequestStatus.APPROVED:
            return False
        queue_locked(action_request)
    return True


def queue_after_commit(request_id: int) -> None:
    """Queue the request once the transaction that approved it has committed."""
    transaction.on_commit(partial(queue_request, request_id))


def _event(action_request: ActionRequest, verb: str, data: dict) -> AuditEvent:
    """An unsaved event by the system about `action_request`, for `append` (as `record` makes)."""
    return AuditEvent(
        organization=action_request.organization,
        timestamp=timezone.now(),
        actor=None,
        actor_username="",
        role="",
        verb=verb,
        request=action_request,
        action_key=action_request.action.key,
        data=json_data(data),
        source=SYSTEM.source,
        ip_address=None,
        user_agent="",
    )


def _append_all(events: list[AuditEvent]) -> None:
    """Append the events, each organization's together, in the order of the organizations' ids
    (so two such transactions cannot deadlock on the chains' heads)."""
    chains: dict[int, list[AuditEvent]] = defaultdict(list)
    for event in events:
        chains[event.organization.pk].append(event)
    for pk in sorted(chains):
        append(chains[pk][0].organization, chains[pk])


def _may_run(request_id: int, runner: str | None) -> bool:
    """Without a lock: whether a delivery as task `runner` could find work on the request.

    A request in progress is its `execution_task`'s (any delivery's when blank); `runner`
    None is a call outside Celery, which may resume any.
    """
    found = ActionRequest.objects.filter(pk=request_id).values_list("status", "execution_task")
    for status, task in found:
        if status == RequestStatus.QUEUED:
            return True
        return status == RequestStatus.IN_PROGRESS and (runner is None or task in {"", runner})
    return False


def start_execution(request_id: int, *, runner: str | None = None) -> Job | None:
    """Queued → in progress (or resume one in progress); the job for its unfinished targets.

    None when there is nothing to do: the request is finished, not yet queued, or in progress
    under another task than `runner` (see `start_executions`).
    """
    jobs = start_executions(request_id, runner=runner)
    return jobs[0] if jobs else None


def start_executions(
    request_id: int, *, runner: str | None = None, batch_size: int = 1
) -> list[Job]:
    """Start the request, and with it up to `batch_size` - 1 other queued requests, in one
    transaction: each moves to in progress under task `runner` with its "execution.started"
    event; their jobs, the request's first. [] when there is nothing to do.

    A request already in progress is resumed alone ("execution.resumed"), and only by its own
    task (`execution_task`, or any when blank; `runner` None resumes any). The others are
    claimed with SKIP LOCKED: a request another worker is starting now is left to it. Their
    own tasks, delivered later, find them in progress under another task and do nothing.
    """
    if runner is not None and not _may_run(request_id, runner):
        return []
    with transaction.atomic():
        first = lock_request(request_id)
        before = first.status
        resumes = before == RequestStatus.IN_PROGRESS and (
            runner is None or first.execution_task in {"", runner}
        )
        if before != RequestStatus.QUEUED and not resumes:
            return []
        claimed = [first]
        if before == RequestStatus.QUEUED and batch_size > 1:
            claimed += (
                ActionRequest.objects.select_for_update(of=("self",), skip_locked=True)
                .select_related("organization", "action")
                .filter(status=RequestStatus.QUEUED)
                .exclude(pk=first.pk)
                .order_by("pk")[: batch_size - 1]
            )
        now = timezone.now()
        ids = [action_request.pk for action_request in claimed]
        changes = {"heartbeat_at": now, "execution_task": runner or ""}
        if before == RequestStatus.QUEUED:
            changes.update(status=RequestStatus.IN_PROGRESS, started_at=now)
        ActionRequest.objects.filter(pk__in=ids).update(
            execution_attempts=F("execution_attempts") + 1, **changes
        )
        RequestTarget.objects.filter(request_id__in=ids, status=TargetStatus.WAITING).update(
            status=TargetStatus.IN_PROGRESS
        )
        targets: dict[int, list[JobTarget]] = defaultdict(list)
        unfinished = RequestTarget.objects.filter(
            request_id__in=ids, status__in=UNFINISHED_TARGETS
        ).order_by("request_id", "position")
        for pk, request, position, kind, value in unfinished.values_list(
            "pk", "request_id", "position", "kind", "value"
        ):
            targets[request].append(JobTarget(id=pk, position=position, kind=kind, value=value))
        events, jobs = [], []
        for action_request in claimed:
            action_request.execution_attempts += 1
            for field, value in changes.items():
                setattr(action_request, field, value)
            if before == RequestStatus.QUEUED:
                verb = "execution.started"
                data = {"status": {"before": before, "after": action_request.status}}
            else:
                # A retry, or a delivery again after a worker was lost: finish what is left.
                verb = "execution.resumed"
                data = {
                    "status": action_request.status,
                    "targets_left": len(targets[action_request.pk]),
                }
            data["attempt"] = action_request.execution_attempts
            data["executor"] = settings.RESPONSE_EXECUTOR
            events.append(_event(action_request, verb, data))
            jobs.append(
                Job(
                    request_id=action_request.pk,
                    idempotency_key=action_request.uuid,
                    action=action_request.action.key,
                    parameters=action_request.parameters,
                    targets=targets[action_request.pk],
                    organization=action_request.organization.slug,
                )
            )
        _append_all(events)
        return jobs


def finish_target(
    target_id: int, *, succeeded: bool, message: str = "", heartbeat: bool = True
) -> bool:
    """Record one target's result; False if it already had one (a duplicate delivery).

    A result is also a heartbeat of its request, unless `heartbeat` is False (a worker whose
    heartbeat thread marks the request alive anyway).
    """
    # One statement: the result is written only where there is none yet.
    recorded = RequestTarget.objects.filter(pk=target_id, status__in=UNFINISHED_TARGETS).update(
        status=TargetStatus.SUCCESSFUL if succeeded else TargetStatus.FAILED,
        message=message,
        finished_at=timezone.now(),
    )
    if recorded and heartbeat:
        # After the target's statement: never hold a target's lock while waiting for the
        # request's (`finish_executions` locks the request, then its targets).
        ActionRequest.objects.filter(targets=target_id, status=RequestStatus.IN_PROGRESS).update(
            heartbeat_at=timezone.now()
        )
    return bool(recorded)


def beat(request_id: int, *, at: datetime | None = None) -> bool:
    """Mark a request in progress alive (until `at`, for a retry that waits); False if it is
    not in progress. One statement, no lock held: safe from the heartbeat's own thread."""
    alive = at or timezone.now()
    running = ActionRequest.objects.filter(pk=request_id, status=RequestStatus.IN_PROGRESS)
    return running.update(heartbeat_at=alive) == 1


def beat_all(request_ids: Iterable[int]) -> int:
    """Mark the requests of a batch alive, those still in progress; how many. One statement."""
    running = ActionRequest.objects.filter(
        pk__in=list(request_ids), status=RequestStatus.IN_PROGRESS
    )
    return running.update(heartbeat_at=timezone.now())


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
    finished = finish_executions([request_id], unfinished=unfinished, message=message)
    if finished:
        return finished[0]
    return ActionRequest.objects.select_related("organization", "action").get(pk=request_id)


def finish_executions(
    request_ids: Iterable[int],
    results: Iterable[TargetResult] = (),
    *,
    unfinished: TargetStatus = TargetStatus.FAILED,
    message: str = NO_RESULT,
) -> list[ActionRequest]:
    """Finish the requests still in progress among `request_ids`, in one transaction.

    Each target without a result yet takes its result from `results` (the executor's, kept
    for the end of a batch), or else `unfinished` and `message`. Each request gets the
    outcome of its targets, its event and its "finished" notification. The requests finished,
    in the order of their ids; a request already finished is left as it is.
    """
    results = {result.target_id: result for result in results}
    with transaction.atomic():
        requests = list(
            ActionRequest.objects.select_for_update(of=("self",))
            .select_related("organization", "action", "requester")
            .filter(pk__in=list(request_ids), status=RequestStatus.IN_PROGRESS)
            .order_by("pk")
        )
        if not requests:
            return []
        now = timezone.now()
        targets: dict[int, list[RequestTarget]] = defaultdict(list)
        changed = []
        for target in (
            RequestTarget.objects.select_for_update()
            .filter(request__in=requests)
            .order_by("request_id", "position")
        ):
            targets[target.request_id].append(target)
            if target.status not in UNFINISHED_TARGETS:
                continue
            result = results.get(target.pk)
            if result is None:
                target.status, target.message = unfinished, message
            else:
                target.status = TargetStatus.SUCCESSFUL if result.succeeded else TargetStatus.FAILED
                target.message = result.message
            target.finished_at = now
            changed.append(target)
        if changed:
            RequestTarget.objects.bulk_update(changed, ["status", "message", "finished_at"])
        approval_settings: dict[int, ApprovalSettings] = {}
        events = []
        for action_request in requests:
            organization = action_request.organization
            if organization.pk not in approval_settings:
                approval_settings[organization.pk] = ApprovalSettings.for_organization(organization)
            shown = [
                {"value": t.value, "status": t.status, "message": t.message}
                for t in targets[action_request.pk]
            ]
            action_request.status = outcome([t["status"] for t in shown])
            action_request.finished_at = now
            if action_request.is_remote_shell and action_request.status == RequestStatus.SUCCESSFUL:
                validity = approval_settings[organization.pk].remote_shell_validity_hours
                action_request.active_until = now + timedelta(hours=validity)
            events.append(
                _event(
                    action_request,
                    FINISHED_VERBS[action_request.status],
                    {
                        "status": {
                            "before": RequestStatus.IN_PROGRESS,
                            "after": action_request.status,
                        },
                        "attempts": action_request.execution_attempts,
                        "targets": shown,
                        **(
                            {"active_until": action_request.active_until}
                            if action_request.active_until
                            else {}
                        ),
                    },
                )
            )
        ActionRequest.objects.bulk_update(requests, ["status", "finished_at", "active_until"])
        for action_request in requests:
            notifications.schedule(
                notifications.FINISHED,
                action_request,
                approval_settings=approval_settings[action_request.organization.pk],
            )
        # Last: a chain's head stays locked from its append to the commit, and submissions in
        # the organization wait for it meanwhile.
        _append_all(events)
        return requests


def retry_alone(request_ids: Iterable[int], results: Iterable[TargetResult], wait: timedelta):
    """Requests of a batch whose executor asked to try again later: record the results they
    have, and send each to the workers again on its own after `wait`, for the first delivery
    to resume. Until then their heartbeat says they are alive (the retry is due then)."""
    for request_id in request_ids:
        with transaction.atomic():
            action_request = lock_request(request_id)
            if action_request.status != RequestStatus.IN_PROGRESS:
                continue
            for result in results:
                target = RequestTarget.objects.filter(
                    pk=result.target_id, request=action_request, status__in=UNFINISHED_TARGETS
                )
                target.update(
                    status=TargetStatus.SUCCESSFUL if result.succeeded else TargetStatus.FAILED,
                    message=result.message,
                    finished_at=timezone.now(),
                )
            action_request.execution_task = ""
            action_request.heartbeat_at = timezone.now() + wait
            action_request.save(update_fields=["execution_task", "heartbeat_at"])
            transaction.on_commit(partial(send, action_request.pk, countdown=wait.total_seconds()))


def _why_not_active(action_request: ActionRequest) -> str | None:
    """None if `action_request` is a remote shell session in force; otherwise why it is not."""
    name, status = action_request.action.name, action_request.get_status_display()
    if not action_request.is_remote_shell:
        return f"Only a remote shell session can be ended; this request is {name}."
    if action_request.is_running:
        return (
            f"This session has not started yet (the request is {status}"
            "); it can be ended once it is active."
        )
    if action_request.status != RequestStatus.SUCCESSFUL:
        return f"This session never started: the request is {status}."
    if action_request.ended_at is not None:
        ended = when(action_request.ended_at)
        if action_request.ended_by is None:
            return f"This session already ended at {ended}: its validity period was over."
        return f"This session was already ended at {ended} by {who(action_request.ended_by)}."
    return None


def end_remote_shell(
    request_id: int, *, actor, reason: str, context: AuditContext = SYSTEM
) -> ActionRequest:
    """An admin ends an active remote shell session before its validity period is over."""
    reason = reason.strip()
    if not reason:
        raise TransitionRefused(
            "Give a reason for ending the session: it is kept with the request."
        )
    now = timezone.now()
    with transaction.atomic():
        action_request = lock_request(request_id)
        role = role_of(
            actor, action_request.organization, {Role.ADMIN}, "end remote shell sessions"
        )
        if _is_overdue_shell(action_request, now):
            _expire_shell(action_request)
        refusal = _why_not_active(action_request)
        if refusal is None:
            action_request.ended_at = now
            action_request.ended_by = actor
            action_request.end_reason = reason
            action_request.save(update_fields=["ended_at", "ended_by", "end_reason"])
            record(
                action_request.organization,
                "remote_shell.ended",
                actor=actor,
                role=role,
                action_request=action_request,
                data={
                    "reason": reason,
                    "active_until": action_request.active_until,
                    "ended_at": now,
                },
                context=context,
            )
    if refusal is not None:
        raise TransitionRefused(refusal)
    return action_request


SHELL_EXPIRED = "Its validity period ended."


def _is_overdue_shell(action_request: ActionRequest, now: datetime) -> bool:
    """A remote shell session past its validity period that nobody has marked ended yet."""
    return (
        action_request.is_remote_shell
        and action_request.status == RequestStatus.SUCCESSFUL
        and action_request.ended_at is None
        and action_request.active_until is not None
        and not action_request.shell_is_active(now)
    )


def _expire_shell(action_request: ActionRequest) -> None:
    action_request.ended_at = action_request.active_until
    action_request.ended_by = None
    action_request.end_reason = SHELL_EXPIRED
    action_request.save(update_fields=["ended_at", "ended_by", "end_reason"])
    record(
        action_request.organization,
        "remote_shell.expired",
        action_request=action_request,
        data={"active_until": action_request.active_until},
    )


def expire_remote_shell(request_id: int) -> bool:
    """End one remote shell session past its validity; False if it was not (or no longer)."""
    with transaction.atomic():
        action_request = lock_request(request_id)
        if not _is_overdue_shell(action_request, timezone.now()):
            return False
        _expire_shell(action_request)
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


def _waiting_since(action_request: ActionRequest) -> datetime | None:
    return {
        RequestStatus.APPROVED: action_request.decided_at,
        RequestStatus.QUEUED: action_request.queued_at,
        RequestStatus.IN_PROGRESS: action_request.started_at,
    }.get(action_request.status)


def _stranded(
    action_request: ActionRequest,
    now: datetime,
    waited: timedelta,
    idle: timedelta,
    silent: timedelta,
) -> bool:
    since = _waiting_since(action_request)
    if since is None:
        return False
    if action_request.status != RequestStatus.IN_PROGRESS:
        return since <= now - waited
    if action_request.heartbeat_at is not None:
        # Its worker marks it alive every few seconds: silence means the worker is gone.
        return action_request.heartbeat_at <= now - silent
    # Started before heartbeats existed: no trace of activity for longer than any attempt
    # can take.
    cutoff = now - idle
    return (
        since <= cutoff
        and not action_request.targets.filter(finished_at__gt=cutoff).exists()
        and not action_request.events.filter(timestamp__gt=cutoff).exists()
    )


def redispatch_request(
    request_id: int, *, waited: timedelta, idle: timedelta, silent: timedelta
) -> bool:
    """Send again a request whose message was lost; False if it is not (or no longer) stranded.

    Approved but never queued, or queued, for longer than `waited`; or in progress with no
    heartbeat for longer than `silent` (its worker died), or, started without heartbeats,
    with no activity for longer than `idle`.
    """
    now = timezone.now()
    with transaction.atomic():
        action_request = lock_request(request_id)
        if not _stranded(action_request, now, waited, idle, silent):
            return False
        since = _waiting_since(action_request)
        data = {
            "status": action_request.status,
            "waiting_since": since,
            "waited_seconds": int((now - since).total_seconds()),
        }
        if action_request.status == RequestStatus.APPROVED:
            data["status"] = {"before": RequestStatus.APPROVED, "after": RequestStatus.QUEUED}
            action_request.status = RequestStatus.QUEUED
        # Whichever delivery comes first resumes it, and makes it its own.
        action_request.execution_task = ""
        if action_request.status == RequestStatus.QUEUED:
            # The next re-send, if this one is lost too, waits as long again.
            action_request.queued_at = now
            action_request.save(update_fields=["status", "queued_at", "execution_task"])
        else:
            if action_request.heartbeat_at is not None:
                data["last_heartbeat"] = action_request.heartbeat_at
                data["silent_seconds"] = int((now - action_request.heartbeat_at).total_seconds())
                # Likewise: the re-sent run gets the whole silence allowance to start beating.
                action_request.heartbeat_at = now
            action_request.save(update_fields=["heartbeat_at", "execution_task"])
        record(
            action_request.organization,
            "execution.redispatched",
            action_request=action_request,
            data=data,
        )
        transaction.on_commit(partial(send, action_request.pk))
        return True


def redispatch_stranded(
    *,
    waited: timedelta | None = None,
    idle: timedelta | None = None,
    silent: timedelta | None = None,
) -> int:
    """Send again every request stranded by a lost message or a lost worker; returns how many."""
    if waited is None:
        waited = timedelta(seconds=settings.EXECUTION_REDISPATCH_AFTER)
    if idle is None:
        idle = timedelta(seconds=settings.EXECUTION_STALLED_AFTER)
    if silent is None:
        silent = timedelta(seconds=settings.EXECUTION_HEARTBEAT_TIMEOUT)
    now = timezone.now()
    requests = ActionRequest.objects
    candidates = (
        requests.filter(status=RequestStatus.APPROVED, decided_at__lte=now - waited)
        | requests.filter(status=RequestStatus.QUEUED, queued_at__lte=now - waited)
        | requests.filter(status=RequestStatus.IN_PROGRESS, heartbeat_at__lte=now - silent)
        | requests.filter(
            status=RequestStatus.IN_PROGRESS, heartbeat_at__isnull=True, started_at__lte=now - idle
        )
    )
    pks = list(candidates.order_by("pk").values_list("pk", flat=True))
    return sum(redispatch_request(pk, waited=waited, idle=idle, silent=silent) for pk in pks)

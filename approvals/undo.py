"""Undo: a request of a reversible action (`actions.catalog.REVERSALS`) is reversed by a new
request of its reversing action, filled in with what is still in force and linked to it.

The new request goes through the request form's validation and `submit_request`, so it is
approved (or waits, or is refused) under the organization's rules like any other request.
"""

import uuid
from collections.abc import Callable

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from actions.catalog import ISOLATE_ENDPOINT, RESTORE_CONNECTION, REVERSALS, Reversal
from actions.models import ResponseAction
from audit.context import SYSTEM, AuditContext
from responseportal.models import Role

from . import services
from .forms import form_for
from .models import FINAL, ActionRequest, RequestStatus, RequestTarget, TargetStatus
from .transitions import TransitionRefused, lock_request, role_of

# Only what ran, wholly or in part, can be undone.
UNDOABLE_STATUSES = frozenset({RequestStatus.SUCCESSFUL, RequestStatus.PARTIALLY_SUCCESSFUL})


def _still_isolated(original: ActionRequest, reversal: Reversal) -> list[str]:
    """The endpoints `original` isolated that no successful Restore Connection gave back
    since, in the original's order."""
    isolated = list(
        original.targets.filter(kind=reversal.target_kind, status=TargetStatus.SUCCESSFUL)
        .order_by("position")
        .values_list("value", "finished_at")
    )
    restored_at = dict(
        RequestTarget.objects.filter(
            request__organization_id=original.organization_id,
            request__action__key=RESTORE_CONNECTION,
            kind=reversal.target_kind,
            status=TargetStatus.SUCCESSFUL,
            value__in=[value for value, _ in isolated],
        )
        .values_list("value")
        .annotate(latest=Max("finished_at"))
        .order_by()
    )
    return [
        value
        for value, isolated_at in isolated
        if value not in restored_at or restored_at[value] <= isolated_at
    ]


# For each reversible action: its targets whose effect is still in force.
STILL_IN_FORCE: dict[str, Callable[[ActionRequest, Reversal], list[str]]] = {
    ISOLATE_ENDPOINT: _still_isolated,
}
if set(STILL_IN_FORCE) != set(REVERSALS):
    raise ImproperlyConfigured(
        "Each reversible action of the catalog needs its rule of what is still in force: "
        f"the catalog has {sorted(REVERSALS)}, approvals/undo.py {sorted(STILL_IN_FORCE)}."
    )


def undoable_targets(original: ActionRequest) -> list[str]:
    """What an Undo of `original` would reverse now; empty if nothing (or not undoable)."""
    reversal = REVERSALS.get(original.action.key)
    if reversal is None or original.status not in UNDOABLE_STATUSES:
        return []
    return STILL_IN_FORCE[original.action.key](original, reversal)


def undo_under_way(original: ActionRequest) -> ActionRequest | None:
    """The latest undo of `original` that has not ended yet (pending, approved or running);
    one pending past its expiry time has ended, though the periodic job has not marked it."""
    return (
        original.undone_by.exclude(status__in=FINAL)
        .exclude(status=RequestStatus.PENDING, expires_at__lte=timezone.now())
        .select_related("action")
        .order_by("-submitted_at", "-id")
        .first()
    )


def _refusal(original: ActionRequest) -> str:
    reversal = REVERSALS.get(original.action.key)
    if reversal is None:
        reversible = ", ".join(
            ResponseAction.objects.filter(key__in=REVERSALS)
            .order_by("position")
            .values_list("name", flat=True)
        )
        return (
            f"{original.action.name} cannot be undone from the portal: only requests of "
            f"{reversible} have an Undo."
        )
    if original.status not in UNDOABLE_STATUSES:
        return (
            "Only a successful or partially successful request can be undone: this one is "
            f"{original.shown_status_label.lower()}."
        )
    return (
        "Nothing left to undo: every target this request changed successfully has been "
        "reversed since."
    )


def undo_request(
    request_id: int, *, actor, context: AuditContext = SYSTEM
) -> tuple[ActionRequest, bool]:
    """The request that undoes request `request_id`, and whether it was created now.

    An undo still under way is returned as it is (False): a double click makes one request.
    Once an undo ended, a new one may reverse whatever is still in force. Refused
    (TransitionRefused, nothing created) for an action with no reversal, a request that did
    not succeed, or one with nothing left to undo.
    """
    with transaction.atomic():
        # Locked so that two clicks at once are one after the other: the second finds the
        # first's undo.
        original = lock_request(request_id)
        role_of(actor, original.organization, {Role.OPERATOR}, "undo requests")
        under_way = undo_under_way(original)
        if under_way is not None:
            return under_way, False
        targets = undoable_targets(original)
        if not targets:
            raise TransitionRefused(_refusal(original))
        reversal = REVERSALS[original.action.key]
        form = form_for(reversal.undo)(
            {reversal.parameter: "\n".join(targets), "submission_token": uuid.uuid4()},
            organization=original.organization,
        )
        if not form.is_valid():
            problems = [message for messages in form.errors.values() for message in messages]
            raise TransitionRefused("The undo could not be filled in: " + " ".join(problems))
        summary = f"Undoes {original.action.name} {original.uuid}\n{form.summary()}"
        created = services.submit_request(
            original.organization,
            ResponseAction.objects.get(key=reversal.undo),
            actor=actor,
            parameters=form.parameters(),
            targets=form.targets(),
            endpoints=form.endpoints(),
            summary=summary,
            undoes=original,
            context=context,
        )
    return created, True

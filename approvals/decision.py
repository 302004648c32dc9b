"""The decision rule: does a request run at once, wait for an admin, or get refused?"""

from collections.abc import Sequence
from dataclasses import dataclass

from actions.catalog import AUTO_APPROVAL_REQUIRED, NOT_REQUIRED

from .models import ApprovalMode

AUTO_APPROVAL_REQUIRED_MESSAGE = f"{AUTO_APPROVAL_REQUIRED}."

# Why a request that breaks glass is refused; untick Break glass and it waits for an admin.
BREAK_GLASS_NOT_NEEDED = (
    "Break-glass is only for Critical and Recommended actions: this one runs without approval, "
    "so submit it without break-glass."
)
BREAK_GLASS_NEVER = (
    "This action can never break glass (auto-approval must be enabled in order to use it): "
    "submit it without break-glass."
)
BREAK_GLASS_OFF = (
    "Break-glass is not allowed in this organization: submit the request without break-glass "
    "so that an admin decides it, or ask an admin to allow break-glass in the approval settings."
)
BREAK_GLASS_NOT_ALLOWED = (
    "Break-glass is not allowed for this action in this organization: submit the request "
    "without break-glass so that an admin decides it."
)
BREAK_GLASS_OUT_OF_SCOPE = (
    "Break-glass cannot reach endpoints outside the organization's scope: {endpoints}. "
    "Submit the request without break-glass so that an admin decides it."
)


@dataclass(frozen=True)
class Decision:
    mode: ApprovalMode | None
    refusal: str = ""
    # Endpoints outside the organization's scope, which force a manual decision.
    out_of_scope: tuple[str, ...] = ()
    # Distinct admin approvals the request waits for: 0 unless the mode is manual.
    approvals_needed: int = 0

    @property
    def refused(self) -> bool:
        return self.mode is None


def decide(action, settings, endpoints: Sequence[str], *, break_glass: bool = False) -> Decision:
    """Decide how a request for `action` on `endpoints` is approved under `settings`.

    `action` has `category`, `key` and `needs_auto_approval`; `settings` has
    `auto_approval_enabled`, `auto_approved_actions`, `in_scope(endpoint)` and
    `approvals_needed_for(action_key)`.
    """
    if break_glass:
        return _break_glass(action, settings, endpoints)
    if action.category == NOT_REQUIRED:
        return Decision(ApprovalMode.NOT_REQUIRED)
    out_of_scope = tuple(endpoint for endpoint in endpoints if not settings.in_scope(endpoint))
    if (
        settings.auto_approval_enabled
        and action.key in settings.auto_approved_actions
        and not out_of_scope
    ):
        return Decision(ApprovalMode.AUTO)
    if action.needs_auto_approval:
        refusal = AUTO_APPROVAL_REQUIRED_MESSAGE
        if settings.auto_approval_enabled and action.key in settings.auto_approved_actions:
            refusal += " Outside the automatic-approval scope: " + ", ".join(out_of_scope) + "."
        return Decision(None, refusal, out_of_scope)
    return Decision(
        ApprovalMode.MANUAL,
        out_of_scope=out_of_scope,
        approvals_needed=settings.approvals_needed_for(action.key),
    )


def _break_glass(action, settings, endpoints: Sequence[str]) -> Decision:
    """An operator asks to run the request at once and have it reviewed afterwards: allowed
    only where the organization allows it for this action, and inside its scope.

    `settings` also has `break_glass_enabled` and `break_glass_actions`.
    """
    if action.category == NOT_REQUIRED:
        return Decision(None, BREAK_GLASS_NOT_NEEDED)
    if action.needs_auto_approval:
        return Decision(None, BREAK_GLASS_NEVER)
    if not settings.break_glass_enabled:
        return Decision(None, BREAK_GLASS_OFF)
    if action.key not in settings.break_glass_actions:
        return Decision(None, BREAK_GLASS_NOT_ALLOWED)
    out_of_scope = tuple(endpoint for endpoint in endpoints if not settings.in_scope(endpoint))
    if out_of_scope:
        refusal = BREAK_GLASS_OUT_OF_SCOPE.format(endpoints=", ".join(out_of_scope))
        return Decision(None, refusal, out_of_scope)
    return Decision(ApprovalMode.BREAK_GLASS)

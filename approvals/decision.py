"""The decision rule: does a request run at once, wait for an admin, or get refused?"""

from collections.abc import Sequence
from dataclasses import dataclass

from actions.catalog import AUTO_APPROVAL_REQUIRED, NOT_REQUIRED

from .models import ApprovalMode

AUTO_APPROVAL_REQUIRED_MESSAGE = f"{AUTO_APPROVAL_REQUIRED}."


@dataclass(frozen=True)
class Decision:
    mode: ApprovalMode | None
    refusal: str = ""
    # Endpoints outside the organization's scope, which force a manual decision.
    out_of_scope: tuple[str, ...] = ()

    @property
    def refused(self) -> bool:
        return self.mode is None


def decide(action, settings, endpoints: Sequence[str]) -> Decision:
    """Decide how a request for `action` on `endpoints` is approved under `settings`.

    `action` has `category`, `key` and `needs_auto_approval`; `settings` has
    `auto_approval_enabled`, `auto_approved_actions` and `in_scope(endpoint)`.
    """
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
    return Decision(ApprovalMode.MANUAL, out_of_scope=out_of_scope)

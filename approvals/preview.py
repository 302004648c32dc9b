"""What approval settings would have done to an organization's recent requests.

Every request of the last 30 days is decided again by `decide()` itself, from its action and
its endpoint targets, under the settings an admin is about to save, and compared with what
actually happened to it. Nothing is written: the settings are an unsaved copy.
"""

import copy
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.utils import timezone

from actions.models import CATEGORY_ORDER, ResponseAction
from responseportal.models import Organization

from .decision import decide
from .models import ActionRequest, ApprovalMode, ApprovalSettings, RequestTarget

PREVIEW_DAYS = 30


def settings_with(current: ApprovalSettings, values: dict) -> ApprovalSettings:
    """An unsaved copy of `current` with `values` (as the settings form gives them) applied."""
    candidate = copy.copy(current)
    for name, value in values.items():
        setattr(candidate, name, value)
    return candidate


AT_ONCE, WAITED, REFUSED = "at_once", "waited", "refused"


def outcome(mode: str | None, approvals_needed: int) -> tuple[str, int]:
    """A request's fate: (at once, 0), (waited, number of admins), or (refused, 0).

    Not required, approved automatically and break-glass all ran at once.
    """
    if mode is None:
        return REFUSED, 0
    if mode == ApprovalMode.MANUAL:
        return WAITED, approvals_needed
    return AT_ONCE, 0


@dataclass
class Outcomes:
    """How many requests ran at once, waited for admins, or were refused."""

    at_once: int = 0
    waited: int = 0
    refused: int = 0
    # Of those that waited, how many for two or three distinct admins.
    several_admins: int = 0

    def count(self, fate: tuple[str, int]) -> None:
        kind, admins = fate
        setattr(self, kind, getattr(self, kind) + 1)
        self.several_admins += admins > 1


@dataclass
class ActionPreview:
    action: ResponseAction
    requests: int = 0
    actual: Outcomes = field(default_factory=Outcomes)
    new: Outcomes = field(default_factory=Outcomes)
    # Requests whose fate (or number of admins) the new settings change.
    changed: int = 0


@dataclass
class Preview:
    since: datetime
    days: int
    rows: list[ActionPreview]

    @property
    def requests(self) -> int:
        return sum(row.requests for row in self.rows)

    @property
    def changed(self) -> int:
        return sum(row.changed for row in self.rows)


def preview(
    organization: Organization, settings: ApprovalSettings, *, now: datetime | None = None
) -> Preview:
    """Decide each request of the organization's last 30 days again under `settings`, and
    compare with what happened to it (refused submissions are never stored, so none of them
    was actually refused).

    Three queries whatever the history holds: the requests, their endpoint targets, and
    their actions.
    """
    since = (now or timezone.now()) - timedelta(days=PREVIEW_DAYS)
    recent = ActionRequest.objects.filter(organization=organization, submitted_at__gte=since)
    stored = list(
        recent.order_by("submitted_at", "id").values_list(
            "pk", "action_id", "approval_mode", "approvals_needed"
        )
    )
    endpoints: dict[int, list[str]] = defaultdict(list)
    targets = RequestTarget.objects.filter(request__in=recent, kind="endpoint")
    for request_id, value in targets.order_by("request_id", "position").values_list(
        "request_id", "value"
    ):
        endpoints[request_id].append(value)
    actions = ResponseAction.objects.in_bulk({action_id for _, action_id, _, _ in stored})
    rows: dict[int, ActionPreview] = {}
    for pk, action_id, mode, approvals_needed in stored:
        action = actions[action_id]
        decision = decide(
            action, settings, endpoints[pk], break_glass=mode == ApprovalMode.BREAK_GLASS
        )
        actual = outcome(mode, approvals_needed)
        new = outcome(decision.mode, decision.approvals_needed)
        row = rows.setdefault(action_id, ActionPreview(action))
        row.requests += 1
        row.actual.count(actual)
        row.new.count(new)
        row.changed += actual != new
    ordered = sorted(
        rows.values(), key=lambda row: (CATEGORY_ORDER[row.action.category], row.action.position)
    )
    return Preview(since=since, days=PREVIEW_DAYS, rows=ordered)

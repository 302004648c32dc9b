"""The figures of an organization's dashboard, and its chart drawn as SVG on the server."""

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.db.models import (
    Count,
    DateTimeField,
    DurationField,
    ExpressionWrapper,
    F,
    Min,
    Q,
    Value,
)
from django.utils import timezone

from audit.chain import chain_of
from audit.models import AuditEvent
from responseportal.models import Organization

from .models import CLOSE_TO_EXPIRY_SHARE, RUNNING, ActionRequest, ApprovalMode, RequestStatus

DAYS = 30
# Requests close to expiry listed on the dashboard; the queue marks them all.
SHOWN_CLOSE_TO_EXPIRY = 5

# Outcome groups shown in the chart, in stacking order, each with its colour and pattern of words.
OUTCOMES = (
    ("successful", "Successful", "#1a7f37", {RequestStatus.SUCCESSFUL}),
    ("partial", "Partially successful", "#1b7c83", {RequestStatus.PARTIALLY_SUCCESSFUL}),
    ("running", "Approved, not finished", "#0969da", RUNNING),
    ("pending", "Pending approval", "#bf8700", {RequestStatus.PENDING}),
    ("failed", "Failed or terminated", "#cf222e", {RequestStatus.FAILED, RequestStatus.TERMINATED}),
    ("rejected", "Rejected", "#8250df", {RequestStatus.REJECTED}),
    (
        "expired",
        "Expired or cancelled",
        "#6e7781",
        {RequestStatus.EXPIRED, RequestStatus.CANCELLED},
    ),
)
OUTCOME_OF = {status: key for key, _, _, statuses in OUTCOMES for status in statuses}


@dataclass
class Day:
    day: date
    counts: Counter = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def percentile(ordered: list[timedelta], share: float) -> timedelta:
    """The `share` percentile of sorted durations, interpolating linearly between the two
    closest ranks (as PostgreSQL's percentile_cont and a spreadsheet's PERCENTILE do)."""
    position = (len(ordered) - 1) * share
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


@dataclass
class DecisionTimes:
    """How long one action's requests (or all of them) waited for an admin's decision."""

    action: str
    durations: list[timedelta] = field(default_factory=list)
    expired: int = 0

    @property
    def decided(self) -> int:
        return len(self.durations)

    @property
    def median(self) -> timedelta | None:
        return percentile(sorted(self.durations), 0.5) if self.durations else None

    @property
    def p90(self) -> timedelta | None:
        return percentile(sorted(self.durations), 0.9) if self.durations else None

    @property
    def median_text(self) -> str:
        return duration_text(self.median) if self.durations else ""

    @property
    def p90_text(self) -> str:
        return duration_text(self.p90) if self.durations else ""


@dataclass
class Figures:
    pending: int
    oldest_pending: datetime | None
    days: list[Day]
    median_decision: timedelta | None
    decided: int
    auto_share: float | None
    needing_approval: int
    latest_events: list[AuditEvent]
    # Over the last 30 days: all actions, then each action that had a decision or expiry.
    decision_times: DecisionTimes
    decision_times_by_action: list[DecisionTimes]
    close_to_expiry: list[ActionRequest]
    close_to_expiry_count: int

    @property
    def expired_undecided(self) -> int:
        return self.decision_times.expired

    @property
    def total(self) -> int:
        return sum(day.total for day in self.days)

    @property
    def median_decision_text(self) -> str:
        return duration_text(self.median_decision) if self.median_decision else ""

    @property
    def auto_share_percent(self) -> int | None:
        return None if self.auto_share is None else round(self.auto_share * 100)

    def legend(self) -> list[dict]:
        totals = Counter()
        for day in self.days:
            totals.update(day.counts)
        return [
            {"key": key, "label": label, "colour": colour, "count": totals[key]}
            for key, label, colour, _ in OUTCOMES
        ]

    def table(self) -> list[dict]:
        return [
            {"day": day.day, "counts": [day.counts[key] for key, *_ in OUTCOMES]}
            for day in self.days
        ]

    def chart(self, width: int = 720, height: int = 180) -> dict:
        """Bars per day, stacked by outcome, as rectangles for the SVG template."""
        peak = max((day.total for day in self.days), default=0) or 1
        slot = width / len(self.days)
        bars = []
        for index, day in enumerate(self.days):
            y = height
            for key, label, colour, _ in OUTCOMES:
                count = day.counts[key]
                if not count:
                    continue
                bar_height = count / peak * (height - 10)
                y -= bar_height
                bars.append(
                    {
                        "x": round(index * slot + 2, 1),
                        "y": round(y, 1),
                        "width": round(slot - 4, 1),
                        "height": round(bar_height, 1),
                        "colour": colour,
                        "title": f"{day.day:%d %b}: {count} {label.lower()}",
                    }
                )
        last = len(self.days) - 1
        labels = [
            {
                "x": width if index == last else round(index * slot + slot / 2, 1),
                "anchor": "end" if index == last else "middle",
                "text": f"{day.day:%d %b}",
            }
            for index, day in enumerate(self.days)
            if (last - index) % 7 == 0
        ]
        return {"width": width, "height": height, "bars": bars, "peak": peak, "labels": labels}


def duration_text(duration: timedelta) -> str:
    """A duration in the largest two units that matter: "2 d 3 h", "4 h 12 min", "35 s"."""
    seconds = int(duration.total_seconds())
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "min"), (seconds, "s")]
    shown = [f"{value} {unit}" for value, unit in parts if value][:2]
    return " ".join(shown) or "0 s"


# The rule of `ActionRequest.is_close_to_expiry`, in the database, on requests annotated by
# `close_to_expiry_annotated`: pending, not overdue, a quarter of the lifetime left or less.
CLOSE_TO_EXPIRY = Q(left_times_share__lte=F("lifetime"))


def close_to_expiry_annotated(requests, now: datetime):
    """`requests` with what CLOSE_TO_EXPIRY compares: the lifetime, and the time left at `now`
    multiplied by the share."""
    return requests.annotate(
        lifetime=ExpressionWrapper(F("expires_at") - F("submitted_at"), DurationField()),
        left_times_share=ExpressionWrapper(
            (F("expires_at") - Value(now, DateTimeField())) * CLOSE_TO_EXPIRY_SHARE,
            DurationField(),
        ),
    )


def close_to_expiry(requests, now: datetime):
    """The requests among `requests` that are close to expiry at `now`."""
    return close_to_expiry_annotated(requests, now).filter(
        CLOSE_TO_EXPIRY, status=RequestStatus.PENDING, expires_at__gt=now
    )


def decision_times(
    organization: Organization, since: datetime, now: datetime
) -> tuple[DecisionTimes, list[DecisionTimes]]:
    """Time from submission to an admin's decision, over the decisions made since `since`,
    and how many requests expired undecided since then (a pending one past its expiry time
    counts: it is expired, marked or not); for all actions and per action."""
    rows = ActionRequest.objects.filter(
        Q(decided_at__gte=since, decided_at__lte=now)
        | Q(status=RequestStatus.PENDING, expires_at__gte=since, expires_at__lte=now),
        organization=organization,
        approval_mode=ApprovalMode.MANUAL,
    ).values_list("action__name", "status", "submitted_at", "decided_at")
    everything = DecisionTimes("All actions")
    by_action: dict[str, DecisionTimes] = defaultdict(lambda: DecisionTimes(""))
    for name, status, submitted_at, decided_at in rows:
        shown = by_action[name]
        shown.action = name
        if status in (RequestStatus.EXPIRED, RequestStatus.PENDING):
            shown.expired += 1
            everything.expired += 1
        elif status != RequestStatus.CANCELLED:  # the requester withdrew it: no decision
            shown.durations.append(decided_at - submitted_at)
            everything.durations.append(decided_at - submitted_at)
    return everything, [by_action[name] for name in sorted(by_action)]


def figures(organization: Organization, now: datetime | None = None) -> Figures:
    now = now or timezone.now()
    since = now - timedelta(days=DAYS)
    waiting = ActionRequest.objects.filter(
        organization=organization, status=RequestStatus.PENDING, expires_at__gt=now
    )
    pending = close_to_expiry_annotated(waiting, now).aggregate(
        oldest=Min("submitted_at"),
        count=Count("pk"),
        closing=Count("pk", filter=CLOSE_TO_EXPIRY),
    )
    recent = list(
        ActionRequest.objects.filter(
            organization=organization, submitted_at__gte=since
        ).values_list("submitted_at", "status", "approval_mode")
    )
    today = timezone.localdate(now)
    days = [Day(today - timedelta(days=offset)) for offset in range(DAYS - 1, -1, -1)]
    by_day = {day.day: day for day in days}
    needing_approval = auto = 0
    for submitted_at, status, mode in recent:
        day = by_day.get(timezone.localdate(submitted_at))
        if day is not None:
            day.counts[OUTCOME_OF[status]] += 1
        if mode == ApprovalMode.NOT_REQUIRED:
            continue
        needing_approval += 1
        auto += mode == ApprovalMode.AUTO
    everything, by_action = decision_times(organization, since, now)
    closing = close_to_expiry(waiting, now)
    return Figures(
        pending=pending["count"],
        oldest_pending=pending["oldest"],
        days=days,
        median_decision=everything.median,
        decided=everything.decided,
        auto_share=auto / needing_approval if needing_approval else None,
        needing_approval=needing_approval,
        latest_events=list(
            # Sign-ins stay in the audit log: a failed one may show a mistyped password.
            AuditEvent.objects.filter(chain=chain_of(organization))
            .exclude(verb__startswith="auth.")
            .select_related("request")
            .order_by("-sequence")[:10]
        ),
        decision_times=everything,
        decision_times_by_action=by_action,
        close_to_expiry=list(
            closing.select_related("action", "requester").order_by("expires_at", "pk")[
                :SHOWN_CLOSE_TO_EXPIRY
            ]
        ),
        close_to_expiry_count=pending["closing"],
    )

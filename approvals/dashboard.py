"""The figures of an organization's dashboard, and its chart drawn as SVG on the server."""

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from statistics import median

from django.db.models import Min
from django.utils import timezone

from audit.chain import chain_of
from audit.models import AuditEvent
from responseportal.models import Organization

from .models import RUNNING, ActionRequest, ApprovalMode, RequestStatus

DAYS = 30

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


def figures(organization: Organization, now: datetime | None = None) -> Figures:
    now = now or timezone.now()
    since = now - timedelta(days=DAYS)
    waiting = ActionRequest.objects.filter(
        organization=organization, status=RequestStatus.PENDING, expires_at__gt=now
    )
    pending = waiting.aggregate(oldest=Min("submitted_at"))
    recent = list(
        ActionRequest.objects.filter(
            organization=organization, submitted_at__gte=since
        ).values_list("submitted_at", "status", "approval_mode", "decided_at")
    )
    today = timezone.localdate(now)
    days = [Day(today - timedelta(days=offset)) for offset in range(DAYS - 1, -1, -1)]
    by_day = {day.day: day for day in days}
    decisions = []
    needing_approval = auto = 0
    for submitted_at, status, mode, decided_at in recent:
        day = by_day.get(timezone.localdate(submitted_at))
        if day is not None:
            day.counts[OUTCOME_OF[status]] += 1
        if mode == ApprovalMode.NOT_REQUIRED:
            continue
        needing_approval += 1
        auto += mode == ApprovalMode.AUTO
        if mode == ApprovalMode.MANUAL and decided_at and status != RequestStatus.EXPIRED:
            decisions.append(decided_at - submitted_at)
    return Figures(
        pending=waiting.count(),
        oldest_pending=pending["oldest"],
        days=days,
        median_decision=median(decisions) if decisions else None,
        decided=len(decisions),
        auto_share=auto / needing_approval if needing_approval else None,
        needing_approval=needing_approval,
        latest_events=list(
            # Sign-ins stay in the audit log: a failed one may show a mistyped password.
            AuditEvent.objects.filter(chain=chain_of(organization))
            .exclude(verb__startswith="auth.")
            .select_related("request")
            .order_by("-sequence")[:10]
        ),
    )

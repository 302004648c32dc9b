"""The sign shown beside each status, so that status never rests on colour alone.

Characters common fonts carry; the pages, the live status JSON and its script all use these.
"""

from .models import RequestStatus, TargetStatus

STATUS_ICONS = {
    RequestStatus.PENDING: "◔",
    RequestStatus.APPROVED: "✔",
    RequestStatus.REJECTED: "✖",
    RequestStatus.EXPIRED: "⊗",
    RequestStatus.CANCELLED: "⊘",
    RequestStatus.QUEUED: "➜",
    RequestStatus.IN_PROGRESS: "➜",
    RequestStatus.SUCCESSFUL: "✔",
    RequestStatus.PARTIALLY_SUCCESSFUL: "◐",
    RequestStatus.FAILED: "✖",
    RequestStatus.TERMINATED: "⊘",
}
TARGET_ICONS = {
    TargetStatus.WAITING: "◔",
    TargetStatus.IN_PROGRESS: "➜",
    TargetStatus.SUCCESSFUL: "✔",
    TargetStatus.FAILED: "✖",
    TargetStatus.TERMINATED: "⊘",
    TargetStatus.SKIPPED: "⊝",
}

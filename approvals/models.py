import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from actions.catalog import START_REMOTE_SHELL
from actions.models import Category, ResponseAction
from audit.models import Source
from responseportal.models import Organization

from . import scope


def default_auto_approved_actions() -> list[str]:
    """Every Critical and Recommended action: one click on the master switch enables them all."""
    return list(
        ResponseAction.objects.filter(
            active=True, category__in=[Category.CRITICAL, Category.RECOMMENDED]
        ).values_list("key", flat=True)
    )


class ScopeMode(models.TextChoices):
    ALL = "all", "All endpoints (with optional exceptions)"
    SELECTED = "selected", "Selected endpoints only"


# The longest pending lifetime (720 h) less its last quarter: a reminder must come before the
# last one, which is sent when a quarter of the lifetime is left.
MAX_REMIND_AFTER_MINUTES = 720 * 60 * 3 // 4
# Automatic approvals are announced in one digest per this many minutes at most (a day).
MAX_DIGEST_MINUTES = 24 * 60


class ApprovalSettings(models.Model):
    """An organization's rules for which requests run without a manual decision."""

    organization = models.OneToOneField(
        Organization, on_delete=models.CASCADE, related_name="approval_settings"
    )
    auto_approval_enabled = models.BooleanField("Enable automatic approval", default=False)
    auto_approved_actions = models.JSONField(default=list, blank=True)
    scope_mode = models.CharField(max_length=10, choices=ScopeMode.choices, default=ScopeMode.ALL)
    scope_selected = models.JSONField(default=list, blank=True)
    scope_exceptions = models.JSONField(default=list, blank=True)
    pending_lifetime_hours = models.PositiveIntegerField(
        "Pending requests expire after (hours)",
        default=72,
        validators=[MinValueValidator(1), MaxValueValidator(720)],
    )
    remote_shell_validity_hours = models.PositiveIntegerField(
        "Remote shell sessions last (hours)",
        default=4,
        validators=[MinValueValidator(1), MaxValueValidator(24)],
    )
    # A pending request is announced again this long after its submission, then once more
    # when a quarter of its lifetime is left; 0 sends no reminders (approvals/reminders.py).
    remind_after_minutes = models.PositiveIntegerField(
        "Remind admins after (minutes)",
        default=30,
        validators=[MaxValueValidator(MAX_REMIND_AFTER_MINUTES)],
    )
    notify_emails = models.JSONField(default=list, blank=True)
    # Automatic approvals (and a flood of outcomes to one requester) are announced in one
    # e-mail per this many minutes; 0 announces each at once (approvals/digests.py).
    digest_minutes = models.PositiveIntegerField(
        "Announce automatic approvals in a digest every (minutes)",
        default=5,
        validators=[MaxValueValidator(MAX_DIGEST_MINUTES)],
    )
    notify_webhook_url = models.URLField("Also notify this webhook", max_length=500, blank=True)
    # Two-person approval: {action key: 2 or 3} distinct admins; an action not listed needs one.
    approvals_needed = models.JSONField(default=dict, blank=True)
    # Break-glass: operators may run an allowed action at once, to be reviewed afterwards.
    break_glass_enabled = models.BooleanField("Allow break-glass", default=False)
    break_glass_actions = models.JSONField(default=list, blank=True)
    # Goes up by one on every save, so a form opened before someone else's change is refused.
    version = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "approval settings"

    def __str__(self) -> str:
        return f"Approval settings of {self.organization}"

    @classmethod
    def for_organization(
        cls, organization: Organization, *, lock: bool = False
    ) -> "ApprovalSettings":
        """The organization's settings; the defaults, unsaved, until an admin first saves them.

        With `lock`, the saved row stays locked until the transaction ends (a change of the
        settings then waits for it); unsaved defaults have no row to lock.
        """
        saved = cls.objects.filter(organization=organization)
        found = (saved.select_for_update() if lock else saved).first()
        if found is None:
            found = cls(
                organization=organization, auto_approved_actions=default_auto_approved_actions()
            )
        return found

    def approvals_needed_for(self, action_key: str) -> int:
        """How many distinct admins must approve a request for the action that waits for them."""
        return self.approvals_needed.get(action_key, 1)

    def in_scope(self, endpoint: str) -> bool:
        """Whether `endpoint` is shown to be inside the scope; see `approvals/scope.py`."""
        if self.scope_mode == ScopeMode.SELECTED:
            return scope.inside_selected(endpoint, self.scope_selected)
        return scope.outside_exceptions(endpoint, self.scope_exceptions)


class ScriptLanguage(models.TextChoices):
    POWERSHELL = "powershell", "PowerShell"
    BASH = "bash", "Bash"


class Script(models.Model):
    """A script of the organization's library, which Run Remote Custom Script runs."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="scripts")
    name = models.CharField(max_length=255)
    language = models.CharField(max_length=12, choices=ScriptLanguage.choices)
    content = models.TextField()
    sha256 = models.CharField(max_length=64)
    size = models.PositiveIntegerField()
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    uploaded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "name"], name="one_script_name_per_organization"
            )
        ]

    def __str__(self) -> str:
        return self.name


class ApprovalMode(models.TextChoices):
    NOT_REQUIRED = "not_required", "Approval not required"
    AUTO = "auto", "Automatically approved"
    MANUAL = "manual", "Manual approval"
    BREAK_GLASS = "break_glass", "Break-glass"


class ReviewOutcome(models.TextChoices):
    ACCEPT = "accept", "Accepted"
    FLAG = "flag", "Flagged"


class RequestStatus(models.TextChoices):
    PENDING = "pending", "Pending approval"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    EXPIRED = "expired", "Expired"
    CANCELLED = "cancelled", "Cancelled"
    QUEUED = "queued", "Queued"
    IN_PROGRESS = "in_progress", "In progress"
    SUCCESSFUL = "successful", "Successful"
    PARTIALLY_SUCCESSFUL = "partially_successful", "Partially successful"
    FAILED = "failed", "Failed"
    TERMINATED = "terminated", "Terminated"


# The status groups, named once: what runs, what is over, and why it is over.
RUNNING = frozenset({RequestStatus.APPROVED, RequestStatus.QUEUED, RequestStatus.IN_PROGRESS})
FINISHED = frozenset(
    {
        RequestStatus.SUCCESSFUL,
        RequestStatus.PARTIALLY_SUCCESSFUL,
        RequestStatus.FAILED,
        RequestStatus.TERMINATED,
    }
)
UNDECIDED_ENDINGS = frozenset(
    {RequestStatus.REJECTED, RequestStatus.EXPIRED, RequestStatus.CANCELLED}
)
FINAL = FINISHED | UNDECIDED_ENDINGS


class Reminder(models.IntegerChoices):
    """The reminders sent to the admins about a pending request, in the order they come."""

    NONE = 0, "None yet"
    STILL_WAITING = 1, "Still waiting"
    CLOSE_TO_EXPIRY = 2, "Close to expiry"


# A pending request with this share of its lifetime left, or less, is close to expiry.
CLOSE_TO_EXPIRY_SHARE = 4  # one quarter


class ActionRequest(models.Model):
    """An operator's request to run one response action in one organization."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="requests"
    )
    action = models.ForeignKey(ResponseAction, on_delete=models.PROTECT, related_name="requests")
    requester = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="action_requests"
    )
    parameters = models.JSONField(default=dict)
    # The text operators and admins search: description or reason and the targets.
    summary = models.TextField(blank=True)
    approval_mode = models.CharField(max_length=20, choices=ApprovalMode.choices)
    status = models.CharField(max_length=24, choices=RequestStatus.choices)
    submitted_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="decided_requests",
    )
    decision_reason = models.TextField(blank=True)
    # Distinct admin approvals it waits for, fixed when it is submitted (0: it needed none).
    approvals_needed = models.PositiveSmallIntegerField(default=1)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    execution_attempts = models.PositiveIntegerField(default=0)
    # The last sign of life of the worker running it (or, while a retry waits, when the retry
    # is due): `dispatch_stranded` sends again a request in progress whose heartbeat stopped.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # The Celery task that runs it while it is in progress (blank: any delivery may resume it).
    # A task of another id finds nothing to do: the request belongs to a batch another task
    # took, or was sent again after its worker went silent.
    execution_task = models.CharField(max_length=64, blank=True, default="")
    # A remote shell session: active until then, unless ended early.
    active_until = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="ended_requests",
    )
    end_reason = models.TextField(blank=True)
    # One per rendered form: a double click or a browser resubmit finds the first request.
    submission_token = models.UUIDField(unique=True, null=True, blank=True, editable=False)
    # The last reminder the admins were sent about it while it waited, and when.
    last_reminder = models.PositiveSmallIntegerField(
        choices=Reminder.choices, default=Reminder.NONE
    )
    last_reminded_at = models.DateTimeField(null=True, blank=True)
    # Break-glass: why the operator ran it without approval, and the admin's review afterwards.
    justification = models.TextField(blank=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="reviewed_requests",
    )
    review_outcome = models.CharField(max_length=10, choices=ReviewOutcome.choices, blank=True)
    review_comment = models.TextField(blank=True)
    # When the review was announced again, once, for a run left unreviewed too long.
    review_reminded_at = models.DateTimeField(null=True, blank=True)
    # The request this one reverses (its Undo), e.g. the Isolate Endpoint a Restore undoes.
    undoes = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="undone_by"
    )

    class Meta:
        ordering = ["-submitted_at", "-id"]
        indexes = [
            # The queue and the requests list: an organization's requests by status, newest first.
            models.Index(
                fields=["organization", "status", "-submitted_at"], name="request_org_status"
            ),
            # The requests list without a status filter.
            models.Index(fields=["organization", "-submitted_at"], name="request_org_newest"),
            # The periodic jobs: requests waiting for a decision or still running.
            models.Index(
                fields=["status"],
                name="request_unfinished",
                condition=models.Q(status__in=["pending", "approved", "queued", "in_progress"]),
            ),
            # end_expired_sessions: remote shells not yet ended.
            models.Index(
                fields=["active_until"],
                name="request_open_shells",
                condition=models.Q(active_until__isnull=False, ended_at__isnull=True),
            ),
            # The Needs review list, the dashboard's count and the overdue-review announcement:
            # an organization's break-glass runs no admin has reviewed yet, oldest first.
            models.Index(
                fields=["organization", "submitted_at"],
                name="request_unreviewed",
                condition=models.Q(approval_mode="break_glass", reviewed_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action.name} ({self.uuid})"

    @property
    def is_pending(self) -> bool:
        return self.status == RequestStatus.PENDING

    @property
    def is_break_glass(self) -> bool:
        return self.approval_mode == ApprovalMode.BREAK_GLASS

    @property
    def awaits_review(self) -> bool:
        """A break-glass run that no admin has reviewed yet."""
        return self.is_break_glass and self.reviewed_at is None

    def is_overdue(self, now=None) -> bool:
        """Pending past its expiry time: it can no longer be approved, marked or not."""
        now = now or timezone.now()
        return self.is_pending and self.expires_at is not None and self.expires_at <= now

    @property
    def close_to_expiry_from(self):
        """When a quarter of its lifetime is left (None if it never waited for a decision)."""
        if self.expires_at is None:
            return None
        return self.expires_at - (self.expires_at - self.submitted_at) / CLOSE_TO_EXPIRY_SHARE

    def is_close_to_expiry(self, now=None) -> bool:
        """Pending, not yet overdue, with a quarter of its lifetime left or less: the queue and
        the dashboard mark it, and its admins get a last reminder."""
        now = now or timezone.now()
        return (
            self.is_pending
            and self.expires_at is not None
            and self.close_to_expiry_from <= now < self.expires_at
        )

    def can_be_decided_by(self, user) -> bool:
        """Whether `user`, an admin of its organization, may decide it now: it is pending, not
        overdue, and not their own request (separation of duties)."""
        return self.is_pending and not self.is_overdue() and self.requester_id != user.pk

    @property
    def approvals_given(self) -> int:
        """How many admins approved it so far; the queue counts them for a whole page at once
        (`approvals_counted`)."""
        counted = getattr(self, "approvals_counted", None)
        return self.approvals.count() if counted is None else counted

    @property
    def approvals_to_go(self) -> int:
        """Admin approvals it still waits for before it is approved (two-person approval)."""
        return max(self.approvals_needed - self.approvals_given, 0)

    @property
    def shown_status(self) -> RequestStatus:
        """The status people see: a pending request past its expiry time is already expired."""
        return RequestStatus.EXPIRED if self.is_overdue() else RequestStatus(self.status)

    @property
    def shown_status_label(self) -> str:
        return self.shown_status.label

    @property
    def is_running(self) -> bool:
        """Approved, queued or in progress: its execution is still to come or under way."""
        return self.status in RUNNING

    @property
    def is_finished(self) -> bool:
        """Executed: successful, partially successful, failed or terminated."""
        return self.status in FINISHED

    @property
    def is_final(self) -> bool:
        """Nothing more will happen to it: finished, or rejected, expired or cancelled."""
        return self.shown_status in FINAL

    @property
    def has_execution(self) -> bool:
        """Whether its page shows an execution section: running now, or it ran."""
        return self.is_running or self.queued_at is not None or self.finished_at is not None

    @property
    def is_remote_shell(self) -> bool:
        return self.action.key == START_REMOTE_SHELL

    def shell_is_active(self, now=None) -> bool:
        """A remote shell session that started and is within its validity period, not ended."""
        now = now or timezone.now()
        return (
            self.is_remote_shell
            and self.status == RequestStatus.SUCCESSFUL
            and self.ended_at is None
            and self.active_until is not None
            and self.active_until > now
        )

    def parameter_rows(self) -> list[dict]:
        """The parameters as label and text, in the order of the action's form (its page and
        the pending-approval e-mail show them)."""
        rows = []
        for parameter in self.action.parameters:
            value = self.parameters.get(parameter["name"])
            if value in (None, "", []):
                continue
            if isinstance(value, list):
                text = "\n".join(
                    f"{item['type']}:{item['value']}" if isinstance(item, dict) else str(item)
                    for item in value
                )
            elif isinstance(value, dict):
                text = "\n".join(f"{k}: {v}" for k, v in value.items() if k != "source")
            else:
                text = str(value)
            rows.append(
                {
                    "label": parameter["label"],
                    "name": parameter["name"],
                    "text": text,
                    "source": value.get("source", "") if isinstance(value, dict) else "",
                }
            )
        return rows


class TargetStatus(models.TextChoices):
    WAITING = "waiting", "Waiting"
    IN_PROGRESS = "in_progress", "In progress"
    SUCCESSFUL = "successful", "Successful"
    FAILED = "failed", "Failed"
    TERMINATED = "terminated", "Terminated"
    SKIPPED = "skipped", "Not run"


UNFINISHED_TARGETS = frozenset({TargetStatus.WAITING, TargetStatus.IN_PROGRESS})


class RequestTarget(models.Model):
    """One endpoint, object or account a request acts on, with its own status."""

    request = models.ForeignKey(ActionRequest, on_delete=models.CASCADE, related_name="targets")
    position = models.PositiveIntegerField()
    kind = models.CharField(max_length=20)
    value = models.CharField(max_length=2100)
    status = models.CharField(
        max_length=20, choices=TargetStatus.choices, default=TargetStatus.WAITING
    )
    message = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["request", "position"]
        constraints = [
            models.UniqueConstraint(fields=["request", "position"], name="one_target_per_position")
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.value}"


class ExecutorCall(models.Model):
    """One call of an executor for one target, kept so a duplicate delivery is visible."""

    request = models.ForeignKey(ActionRequest, on_delete=models.PROTECT, related_name="calls")
    target = models.ForeignKey(
        RequestTarget, on_delete=models.PROTECT, null=True, blank=True, related_name="calls"
    )
    executor = models.CharField(max_length=40)
    idempotency_key = models.UUIDField()
    called_at = models.DateTimeField(default=timezone.now)
    outcome = models.CharField(max_length=20, blank=True)
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["called_at", "id"]
        indexes = [
            # Has this request (by its idempotency key) already been executed?
            models.Index(fields=["idempotency_key"], name="executor_call_key"),
        ]

    def __str__(self) -> str:
        return f"{self.executor} {self.idempotency_key} {self.outcome}"


class Notification(models.Model):
    """The outbox: one notification about a request, written in the transaction of the change
    it announces, so that no outage (broker, worker, mail server, webhook) loses it.

    A worker delivers it after commit; `deliver_notifications` (beat, every minute) delivers
    whatever is still unsent, at least once. Its e-mail and its webhook call are marked sent
    separately, so a retry repeats only the part that failed.
    """

    request = models.ForeignKey(
        ActionRequest, on_delete=models.CASCADE, related_name="notifications"
    )
    # One of the kinds in `approvals/notifications.py` (pending, approved, finished, ...).
    kind = models.CharField(max_length=20)
    email_due = models.BooleanField(default=True)
    webhook_due = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    email_sent_at = models.DateTimeField(null=True, blank=True)
    webhook_sent_at = models.DateTimeField(null=True, blank=True)
    # Everything due was delivered; None while something is still to send.
    sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    # When the periodic delivery tries it (again); None once it gave up.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # Its e-mail goes out in a digest (approvals/digests.py), not on its own.
    in_digest = models.BooleanField(default=False)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            # send_due_digests: the e-mails waiting for a digest, oldest first.
            models.Index(
                fields=["created_at"],
                name="notification_awaits_digest",
                condition=models.Q(in_digest=True, email_sent_at__isnull=True),
            ),
            # deliver_notifications: the unsent notifications that are due.
            models.Index(
                fields=["next_attempt_at"],
                name="notification_unsent",
                condition=models.Q(sent_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} notification of request {self.request_id}"


class EmailLinkUse(models.Model):
    """An approve or reject link of a pending-approval e-mail that decided its request.

    Written in the transaction of the decision, so a use that decided nothing (a form refused,
    a decision refused, an error) leaves no trace and the link still works; once the decision
    is committed, that admin's links for that request never work again.
    """

    request = models.ForeignKey(
        ActionRequest, on_delete=models.CASCADE, related_name="email_link_uses"
    )
    admin = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decision = models.CharField(max_length=10)
    used_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["request", "admin"], name="one_email_link_use_per_admin"
            )
        ]

    def __str__(self) -> str:
        return f"{self.decision} link of request {self.request_id} used by {self.admin_id}"


class Approval(models.Model):
    """One admin's approval of a request that needs several (two-person approval); the request
    is approved when the last needed one is given. An admin approves a request once."""

    request = models.ForeignKey(ActionRequest, on_delete=models.CASCADE, related_name="approvals")
    admin = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    approved_at = models.DateTimeField(default=timezone.now)
    comment = models.TextField(blank=True)
    source = models.CharField(max_length=20, choices=Source.choices)

    class Meta:
        ordering = ["approved_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["request", "admin"], name="one_approval_per_admin")
        ]

    def __str__(self) -> str:
        return f"Approval of request {self.request_id} by {self.admin_id}"

"""The audit log's rows: events, appended only, and the head of each organization's chain."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from responseportal.models import Organization

# The prev_hash of a chain's first event.
GENESIS_HASH = "0" * 64


class Source(models.TextChoices):
    WEB = "web", "Web"
    EMAIL = "email", "E-mail link"
    SYSTEM = "system", "System"
    API = "api", "API"
    SSO = "sso", "Single sign-on"


class AuditEventQuerySet(models.QuerySet):
    """Audit events are only ever added: bulk changes are refused like single ones."""

    def update(self, **kwargs):
        raise ValidationError("Audit events are append-only: events cannot be changed.")

    def bulk_update(self, objs, fields, batch_size=None):
        raise ValidationError("Audit events are append-only: events cannot be changed.")

    def delete(self):
        raise ValidationError("Audit events are append-only: events cannot be deleted.")


class AuditEvent(models.Model):
    """One thing someone (or the system) did, recorded in the same transaction as the change.

    Events form one hash chain per organization (`chain`), plus a "platform" chain for
    events that belong to no organization (a failed sign-in with an unknown username).
    Migration approvals 0003 installs triggers refusing UPDATE and DELETE on this table. On SQLite,
    a migration that rebuilds the table (most field changes) drops them: re-create them after.
    """

    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, null=True, blank=True, related_name="audit_events"
    )
    chain = models.CharField(max_length=40)
    sequence = models.PositiveBigIntegerField()
    timestamp = models.DateTimeField(default=timezone.now)
    # Users with a recorded past are deactivated, never deleted.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    actor_username = models.CharField(max_length=150, blank=True)
    role = models.CharField(max_length=20, blank=True)
    verb = models.CharField(max_length=64)
    # A string reference, not an import: requests are the approvals app's, which builds on this one.
    request = models.ForeignKey(
        "approvals.ActionRequest",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="events",
    )
    action_key = models.CharField(max_length=60, blank=True)
    data = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.WEB)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        # The table was created by the approvals app; it keeps its name, rows and triggers.
        db_table = "approvals_auditevent"
        ordering = ["-timestamp", "-id"]
        constraints = [
            # Also the index of the audit log and its keyset pages (`chain = ? AND sequence < ?
            # ORDER BY sequence DESC`, scanned backwards), the dashboard's latest events, and
            # verify_audit_log's walk of a chain.
            models.UniqueConstraint(fields=["chain", "sequence"], name="one_event_per_chain_link")
        ]
        indexes = [
            # A request's timeline, and the audit log filtered to one request.
            models.Index(fields=["request", "timestamp"], name="audit_request_time"),
            # The audit log filtered by verb, newest first.
            models.Index(fields=["chain", "verb", "-sequence"], name="audit_chain_verb"),
            # The audit log filtered by an exact actor username, newest first.
            models.Index(fields=["chain", "actor_username", "-sequence"], name="audit_chain_actor"),
            # The audit log filtered by action, newest first.
            models.Index(fields=["chain", "action_key", "-sequence"], name="audit_chain_action"),
            # The audit log filtered by source, newest first.
            models.Index(fields=["chain", "source", "-sequence"], name="audit_chain_source"),
            # The audit log filtered by a time range: the first and last sequence in it.
            models.Index(fields=["chain", "timestamp", "sequence"], name="audit_chain_time"),
        ]

    def __str__(self) -> str:
        return f"{self.timestamp:%Y-%m-%d %H:%M:%S} {self.actor_username or 'system'} {self.verb}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValidationError("Audit events are append-only: an event cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValidationError("Audit events are append-only: an event cannot be deleted.")


class AuditChainHead(models.Model):
    """The last link of one audit chain; locking this row serializes appends to that chain.

    Unlike the events, heads are updated on every append.
    """

    chain = models.CharField(max_length=40, primary_key=True)
    last_sequence = models.PositiveBigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default=GENESIS_HASH)
    # The last event's time: the next one is never earlier (see `audit.record`).
    last_timestamp = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "approvals_auditchainhead"

    def __str__(self) -> str:
        return f"{self.chain} at {self.last_sequence}"


class AuditTally(models.Model):
    """Sign-in traffic of one kind in one chain, counted in a window instead of recorded event
    by event (see `audit.flood`).

    `admitted` events were appended in the window; `counted` more were only counted, and are
    written as one `auth.attempts_counted` event once the window has ended. Rows of ended
    windows are deleted when their count is written.
    """

    # SHA-256 of the chain, the kind and the subject: usernames and addresses have no length
    # that fits an index.
    key = models.CharField(max_length=64, primary_key=True)
    chain = models.CharField(max_length=40)
    kind = models.CharField(max_length=20)
    # What the summary names: the username and address of a lockout, the address of a limit.
    subject = models.JSONField(default=dict, blank=True)
    limit = models.PositiveIntegerField()
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    admitted = models.PositiveIntegerField(default=0)
    counted = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [
            # The windows that have ended, oldest first, to write their counts.
            models.Index(fields=["window_end"], name="audit_tally_window_end"),
        ]

    def __str__(self) -> str:
        return f"{self.chain} {self.kind} {self.subject}: {self.admitted} + {self.counted}"

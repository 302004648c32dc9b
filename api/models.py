"""API tokens: a secret that lets a script act as one user in one organization."""

from django.conf import settings
from django.db import models
from django.utils import timezone

from responseportal.models import Organization


class ApiToken(models.Model):
    """One token; its secret is never stored, only its SHA-256 (see `api.tokens`).

    The token carries no role: each request acts with the role its user holds in the
    organization at that moment, so a changed or removed membership takes effect at once.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    # SHA-256 of the whole secret, hexadecimal: the secret has 256 random bits, so a fast hash
    # is enough, and the authentication looks the token up by it.
    secret_hash = models.CharField(max_length=64, unique=True)
    # The first characters of the secret, shown in lists so people can tell tokens apart.
    hint = models.CharField(max_length=12)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The API tokens page: a user's tokens, newest first.
            models.Index(fields=["user", "-created_at"], name="api_token_user_created"),
            # The organization's tokens page, newest first.
            models.Index(fields=["organization", "-created_at"], name="api_token_org_created"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.hint}…) of {self.user} in {self.organization}"

    def is_active(self, now=None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and self.expires_at > now

    @property
    def state(self) -> str:
        """What the token pages show: active, revoked or expired."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at <= timezone.now():
            return "expired"
        return "active"


class IdempotencyKey(models.Model):
    """An `Idempotency-Key` a user sent with a submission, and the request it made.

    The same key with the same body returns that request; with another body it is refused.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    body_sha256 = models.CharField(max_length=64)
    # A string reference: requests are the approvals app's.
    action_request = models.ForeignKey(
        "approvals.ActionRequest", on_delete=models.CASCADE, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # Also the index of the lookup on every submission with a key.
            models.UniqueConstraint(
                fields=["user", "organization", "key"], name="one_request_per_idempotency_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.key} of {self.user} in {self.organization}"

from django.conf import settings
from django.db import models

from responseportal.models import Organization, Role


class IdentityProvider(models.Model):
    """An organization's OpenID Connect identity provider, through which its members sign in."""

    organization = models.OneToOneField(
        Organization, on_delete=models.CASCADE, related_name="identity_provider"
    )
    issuer = models.URLField(
        max_length=500,
        help_text="The provider's issuer identifier, exactly as its ID tokens say it.",
    )
    client_id = models.CharField(max_length=255)
    # Fernet token (sso.secrets); the secret itself is never shown back.
    client_secret_encrypted = models.TextField()
    # Lower-case ASCII (IDNA) domain names: a user's e-mail address must end in one of them.
    allowed_domains = models.JSONField(default=list)
    groups_claim = models.CharField(max_length=100, default="groups")
    # Group name (as the provider sends it) -> Role value.
    role_mapping = models.JSONField(default=dict)
    password_sign_in_disabled = models.BooleanField(
        default=False,
        help_text="Members of the organization sign in only through the identity provider.",
    )
    amr_satisfies_step_up = models.BooleanField(
        default=False,
        help_text="A sign-in the provider says used several factors counts as a second factor.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "identity provider"

    def __str__(self) -> str:
        return f"{self.issuer} for {self.organization}"

    @property
    def discovery_url(self) -> str:
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"

    def role_for(self, groups: list[str]) -> str | None:
        """The strongest role any of `groups` maps to (admin, then operator, then auditor)."""
        mapped = {self.role_mapping.get(group) for group in groups}
        for role in (Role.ADMIN, Role.OPERATOR, Role.AUDITOR):
            if role.value in mapped:
                return role.value
        return None


class ExternalIdentity(models.Model):
    """A portal user as a provider knows them: its issuer and their subject (`sub`) there.

    Users are found by this pair at sign-in, never by e-mail address alone.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="external_identities"
    )
    issuer = models.CharField(max_length=500)
    subject = models.CharField(max_length=255)
    email = models.EmailField(max_length=254, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_sign_in_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "external identities"
        constraints = [
            models.UniqueConstraint(fields=["issuer", "subject"], name="one_user_per_subject")
        ]

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"

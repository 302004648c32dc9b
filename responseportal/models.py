from django.conf import settings
from django.db import models


class SecondFactorPolicy(models.TextChoices):
    NONE = "none", "Not required"
    ADMINS = "admins", "Required for admins"
    EVERYONE = "everyone", "Required for every member"


class Organization(models.Model):
    """A customer of the MDR provider, whose environment response actions run in."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=60, unique=True, help_text="Used in the portal's URLs.")
    created_at = models.DateTimeField(auto_now_add=True)
    # Who must prove a second factor to use the organization (accounts/ enforces it). A new
    # organization requires it of its admins; the database's default, which the organizations
    # that existed before got (and a row written outside the ORM gets), requires nothing.
    second_factor_policy = models.CharField(
        max_length=10,
        choices=SecondFactorPolicy.choices,
        default=SecondFactorPolicy.ADMINS,
        db_default=SecondFactorPolicy.NONE,
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def requires_second_factor(self, role: str) -> bool:
        """Whether a member holding `role` must have a second factor to use this organization."""
        return self.second_factor_policy == SecondFactorPolicy.EVERYONE or (
            self.second_factor_policy == SecondFactorPolicy.ADMINS and role == Role.ADMIN
        )


class Role(models.TextChoices):
    OPERATOR = "operator", "Operator"
    ADMIN = "admin", "Admin"
    AUDITOR = "auditor", "Auditor"


class Membership(models.Model):
    """The role one user holds in one organization."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=20, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organization__name", "user__username"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "organization"], name="one_membership_per_user_and_organization"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} — {self.get_role_display()} of {self.organization}"

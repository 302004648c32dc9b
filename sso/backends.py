"""Password sign-in switched off by an organization: its members sign in through its provider."""

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction

from audit.chain import AuditLogJammed, chain_of, record
from audit.context import SYSTEM, AuditContext
from audit.flood import admit, failure_gates
from responseportal.models import Organization


def organizations_without_passwords(user) -> list[Organization]:
    """The user's organizations that switched password sign-in off, in the order of their ids."""
    return list(
        Organization.objects.filter(
            identity_provider__password_sign_in_disabled=True, memberships__user=user
        ).order_by("pk")
    )


def _record_refusal(request, user, organizations: list[Organization]) -> None:
    """An `auth.sign_in_failed` in each organization, past the failed sign-ins' gates."""
    context = AuditContext.from_request(request) if request is not None else SYSTEM
    for organization in organizations:
        try:
            with transaction.atomic():
                if admit(chain_of(organization), failure_gates(context.ip_address)):
                    record(
                        organization,
                        "auth.sign_in_failed",
                        actor_username=user.get_username(),
                        data={
                            "username": user.get_username(),
                            "reason": "password sign-in is switched off",
                        },
                        context=context,
                    )
        except AuditLogJammed:
            continue  # alerted where raised; the refusal stands


class PasswordSignInPolicy:
    """Placed before ModelBackend: a right password of a member of such an organization is
    refused with a form error that says where to sign in instead. Platform admins
    (superusers) keep their password, so that they can repair a broken registration.

    It raises ValidationError, which the sign-in forms (the portal's and the admin's) show
    as their error; it signs nobody in itself. It has no `get_user` on purpose: Django then
    never records it as the backend of a session (force_login and login() pass over it).
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None or password is None:
            return None
        User = get_user_model()
        user = User._default_manager.filter(**{User.USERNAME_FIELD: username}).first()
        if user is None or user.is_superuser:
            return None
        organizations = organizations_without_passwords(user)
        if organizations and user.check_password(password):
            _record_refusal(request, user, organizations)
            names = ", ".join(sorted(organization.name for organization in organizations))
            raise ValidationError(
                f"{names} signs in only through its identity provider: choose "
                '"Sign in with your organization\'s identity provider" below.',
                code="password_sign_in_off",
            )
        return None

"""Password sign-in switched off by an organization: its members sign in through its provider."""

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from .models import IdentityProvider


def organizations_without_passwords(user) -> list[str]:
    """The names of the user's organizations that switched password sign-in off."""
    return list(
        IdentityProvider.objects.filter(
            password_sign_in_disabled=True, organization__memberships__user=user
        )
        .order_by("organization__name")
        .values_list("organization__name", flat=True)
    )


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
        names = organizations_without_passwords(user)
        if names and user.check_password(password):
            raise ValidationError(
                f"{', '.join(names)} signs in only through its identity provider: choose "
                '"Sign in with your organization\'s identity provider" below.',
                code="password_sign_in_off",
            )
        return None

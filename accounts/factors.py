"""A user's second factors, and the organizations that require one of them.

Three kinds: an authenticator app's six-digit codes (TOTP, django-otp's TOTPDevice), passkeys
and security keys (WebAuthn, `Passkey`), and single-use recovery codes (django-otp's
StaticDevice). Recovery codes stand in for a lost device; they are not a factor on their own.
"""

import unicodedata

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Exists, OuterRef
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from responseportal.models import Membership

from .kinds import RECOVERY, TOTP
from .models import Passkey

RECOVERY_DEVICE_NAME = "Recovery codes"
TOTP_DEVICE_NAME = "Authenticator app"
# Longer than any code the portal issues (a recovery code with its dashes is 19 characters).
CODE_MAX_LENGTH = 64


def totp_device(user) -> TOTPDevice | None:
    """The user's confirmed authenticator app, if any."""
    return TOTPDevice.objects.filter(user=user, confirmed=True).first()


def recovery_device(user) -> StaticDevice | None:
    return StaticDevice.objects.filter(user=user, name=RECOVERY_DEVICE_NAME).first()


def has_second_factor(user) -> bool:
    """Whether the user has an authenticator app or a passkey (one statement: an
    organization's policy asks it on each of its pages)."""
    return (
        get_user_model()
        .objects.filter(
            Exists(TOTPDevice.objects.filter(user=OuterRef("pk"), confirmed=True))
            | Exists(Passkey.objects.filter(user=OuterRef("pk"))),
            pk=user.pk,
        )
        .exists()
    )


def organizations_requiring(user) -> list:
    """The organizations whose policy requires a second factor of this user (their role)."""
    memberships = Membership.objects.filter(user=user).select_related("organization")
    return [m.organization for m in memberships if m.organization.requires_second_factor(m.role)]


def normalized_code(raw: str) -> str:
    """A typed code as the devices compare it: other spellings of the same digits and letters
    (full-width, spaces, dashes, invisible characters, capitals) read as the plain ones."""
    text = unicodedata.normalize("NFKC", raw)
    return "".join(ch for ch in text if ch.isalnum()).lower()


def verify_code(user, raw: str) -> str | None:
    """The kind of factor `raw` proves for `user` ("totp" or "recovery"), or None.

    An authenticator code is accepted once (django-otp remembers the last time step used) and
    each device slows down guessing after a failure (django-otp's throttling); a recovery code
    is used up by a match.
    """
    code = normalized_code(raw)
    if not code or len(code) > CODE_MAX_LENGTH or not code.isascii():
        return None
    # Locked, so that one code sent twice at once is accepted once.
    with transaction.atomic():
        if code.isdigit():
            device = TOTPDevice.objects.select_for_update().filter(user=user, confirmed=True)
            device = device.first()
            return TOTP if device is not None and device.verify_token(code) else None
        recovery = StaticDevice.objects.select_for_update().filter(
            user=user, name=RECOVERY_DEVICE_NAME
        )
        recovery = recovery.first()
        if recovery is not None and has_second_factor(user) and recovery.verify_token(code):
            return RECOVERY
    return None

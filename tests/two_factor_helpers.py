"""Second factors for the tests: an authenticator app with a known secret, codes computed
from it with pyotp (independently of django-otp), and signing in through the real pages."""

import base64
import time

import pyotp
from django.test import Client
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from .factories import PASSWORD

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
ADDRESS = "203.0.113.50"


def give_totp(user, secret: str = SECRET) -> TOTPDevice:
    return TOTPDevice.objects.create(
        user=user, name="Authenticator app", confirmed=True, key=base64.b32decode(secret).hex()
    )


def code(secret: str = SECRET, *, steps_ahead: int = 0) -> str:
    """The code the app shows now (or that many 30-second steps later)."""
    return pyotp.TOTP(secret).at(time.time() + 30 * steps_ahead)


def wrong_code(secret: str = SECRET) -> str:
    """A code that no step within django-otp's tolerance accepts."""
    accepted = {code(secret, steps_ahead=n) for n in (-2, -1, 0, 1, 2)}
    return next(f"{n:06d}" for n in range(1_000_000) if f"{n:06d}" not in accepted)


def sign_in_with_password(client: Client, user):
    return client.post(
        reverse("login"),
        {"username": user.get_username(), "password": PASSWORD},
        REMOTE_ADDR=ADDRESS,
    )


def send_code(client: Client, value: str):
    return client.post(reverse("sign_in_second_factor"), {"code": value}, REMOTE_ADDR=ADDRESS)


def signed_in_with_totp(user, secret: str = SECRET) -> Client:
    """A client signed in through both steps: its second factor is fresh."""
    client = Client()
    assert sign_in_with_password(client, user).status_code == 302
    assert send_code(client, code(secret)).status_code == 302
    return client


def signed_in_long_ago(user) -> Client:
    """A client signed in without a recent second factor (as after more than STEP_UP_MAX_AGE)."""
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return client


def signed_in(user) -> Client:
    return signed_in_long_ago(user)

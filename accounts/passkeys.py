"""Passkeys (WebAuthn) with py_webauthn: the options a browser needs, and the checks of what
it sends back. The challenge of each ceremony lives in the session, used once."""

import json
import time

from django.conf import settings
from django.http import HttpRequest
from webauthn import (
    base64url_to_bytes,
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from .models import Passkey
from .services import touch_passkey

CHALLENGE_KEY = "passkey_challenge"
# How long a browser may take between asking for options and answering.
CEREMONY_SECONDS = 5 * 60
# A browser's answer is a few kilobytes; anything much larger is not one.
MAX_ANSWER_BYTES = 64 * 1024


class PasskeyRefused(Exception):
    """The browser's answer does not prove the passkey; the message says what to do."""


def rp_id(request: HttpRequest) -> str:
    """The relying party: WEBAUTHN_RP_ID, else the host the page was served from (validated
    against ALLOWED_HOSTS by get_host), without its port."""
    if settings.WEBAUTHN_RP_ID:
        return settings.WEBAUTHN_RP_ID
    host = request.get_host()
    if host.startswith("["):  # an IPv6 literal cannot be a relying party id anyway
        return host
    return host.rsplit(":", 1)[0] if ":" in host else host


def origins(request: HttpRequest) -> list[str]:
    return settings.WEBAUTHN_ORIGINS or [f"{request.scheme}://{request.get_host()}"]


def _remember(request: HttpRequest, purpose: str, challenge: bytes) -> None:
    request.session[CHALLENGE_KEY] = {
        "purpose": purpose,
        "challenge": bytes_to_base64url(challenge),
        "at": int(time.time()),
    }


def _take_challenge(request: HttpRequest, purpose: str) -> bytes:
    stored = request.session.pop(CHALLENGE_KEY, None)
    if (
        not isinstance(stored, dict)
        or stored.get("purpose") != purpose
        or time.time() - stored.get("at", 0) > CEREMONY_SECONDS
    ):
        raise PasskeyRefused("This passkey prompt has expired: try again.")
    return base64url_to_bytes(stored["challenge"])


def _answer(body: bytes) -> dict:
    if len(body) > MAX_ANSWER_BYTES:
        raise PasskeyRefused("This answer is too large to be a passkey's.")
    try:
        answer = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise PasskeyRefused("This answer is not a passkey's: expected JSON.") from None
    if not isinstance(answer, dict) or not isinstance(answer.get("credential"), dict):
        raise PasskeyRefused("This answer is not a passkey's: the credential is missing.")
    return answer


def registration_options(request: HttpRequest, user) -> str:
    options = generate_registration_options(
        rp_id=rp_id(request),
        rp_name=settings.WEBAUTHN_RP_NAME,
        user_id=str(user.pk).encode(),
        user_name=user.get_username(),
        user_display_name=user.get_full_name() or user.get_username(),
        exclude_credentials=[
            PublicKeyCredentialDescriptor(id=_bytes(p.credential_id))
            for p in Passkey.objects.filter(user=user)
        ],
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
    )
    _remember(request, "register", options.challenge)
    return options_to_json(options)


def verify_registration(request: HttpRequest, body: bytes) -> dict:
    """What to store of a new passkey: its id, public key, counter, transports and name."""
    answer = _answer(body)
    challenge = _take_challenge(request, "register")
    try:
        verified = verify_registration_response(
            credential=answer["credential"],
            expected_challenge=challenge,
            expected_rp_id=rp_id(request),
            expected_origin=origins(request),
        )
    except (WebAuthnException, KeyError, TypeError, ValueError) as error:
        raise PasskeyRefused(f"This passkey could not be registered: {error}") from None
    transports = answer["credential"].get("response", {}).get("transports") or []
    return {
        "credential_id": bytes_to_base64url(verified.credential_id),
        "public_key": verified.credential_public_key,
        "sign_count": verified.sign_count,
        "transports": [t for t in transports if isinstance(t, str)][:8],
    }


def authentication_options(request: HttpRequest, user, purpose: str) -> str:
    options = generate_authentication_options(
        rp_id=rp_id(request),
        allow_credentials=[
            PublicKeyCredentialDescriptor(id=_bytes(p.credential_id))
            for p in Passkey.objects.filter(user=user)
        ],
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    _remember(request, purpose, options.challenge)
    return options_to_json(options)


def verify_authentication(request: HttpRequest, user, body: bytes, purpose: str) -> Passkey:
    """The user's passkey that signed this session's challenge; its counter moves on."""
    answer = _answer(body)
    challenge = _take_challenge(request, purpose)
    credential_id = answer["credential"].get("id")
    passkey = (
        Passkey.objects.filter(user=user, credential_id=credential_id).first()
        if isinstance(credential_id, str)
        else None
    )
    if passkey is None:
        raise PasskeyRefused("This passkey is not one of yours: use one registered here.")
    try:
        verified = verify_authentication_response(
            credential=answer["credential"],
            expected_challenge=challenge,
            expected_rp_id=rp_id(request),
            expected_origin=origins(request),
            credential_public_key=bytes(passkey.public_key),
            credential_current_sign_count=passkey.sign_count,
        )
    except (WebAuthnException, KeyError, TypeError, ValueError) as error:
        raise PasskeyRefused(f"This passkey could not be checked: {error}") from None
    touch_passkey(passkey, verified.new_sign_count)
    return passkey


def _bytes(value: str) -> bytes:
    return base64url_to_bytes(value)


def answer_name(body: bytes) -> str:
    """The name the user gave the passkey being registered ("" if none)."""
    name = _answer(body).get("name")
    return name if isinstance(name, str) else ""

"""Client secrets at rest: encrypted with a key derived from SECRET_KEY.

A database dump alone does not give away an organization's client secret. The key is derived
with HMAC-SHA256 from SECRET_KEY (and each of SECRET_KEY_FALLBACKS, so a rotated key still
reads what the old one wrote); a secret none of them can read must be entered again.
"""

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.utils.crypto import salted_hmac

_PURPOSE = "sso.IdentityProvider.client_secret"


class UnreadableSecret(Exception):
    """The stored secret was written under a SECRET_KEY the portal no longer has."""


def _fernet(secret_key: str) -> Fernet:
    digest = salted_hmac(_PURPOSE, "client secret", secret=secret_key, algorithm="sha256").digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def _keys() -> MultiFernet:
    keys = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return MultiFernet([_fernet(key) for key in keys])


def encrypt(plain: str) -> str:
    return _keys().encrypt(plain.encode()).decode("ascii")


def decrypt(token: str) -> str:
    try:
        return _keys().decrypt(token.encode("ascii")).decode()
    except (InvalidToken, UnicodeError) as error:
        raise UnreadableSecret(
            "The client secret cannot be read with the portal's SECRET_KEY (it was saved under "
            "another one): an admin of the organization must enter it again."
        ) from error

"""Step-up: a second factor confirmed recently, asked again before the changes that matter.

`confirm_second_factor(request, kind)` is the one way a session records that its user proved a
second factor (an authenticator code, a passkey, a recovery code, or an identity provider's
multi-factor claim); `step_up_required` guards a view whose POST must follow such a proof made
within the last STEP_UP_MAX_AGE seconds.
"""

import time

from django.conf import settings
from django.http import HttpRequest

SESSION_KEY = "second_factor"

TOTP = "totp"
WEBAUTHN = "webauthn"
RECOVERY = "recovery"
IDP = "idp"
KINDS = (TOTP, WEBAUTHN, RECOVERY, IDP)


def confirm_second_factor(request: HttpRequest, kind: str) -> None:
    """Record in the session that its user has just proved a second factor of `kind`
    (one of KINDS). Call it after `login()`: signing in starts a new session."""
    if kind not in KINDS:
        raise ValueError(f"{kind!r} is not a kind of second factor: expected one of {KINDS}.")
    request.session[SESSION_KEY] = {"at": int(time.time()), "kind": kind}


def recent_second_factor(request: HttpRequest) -> str | None:
    """The kind of the second factor this session proved within STEP_UP_MAX_AGE, else None."""
    proof = request.session.get(SESSION_KEY)
    if not isinstance(proof, dict) or proof.get("kind") not in KINDS:
        return None
    if time.time() - proof.get("at", 0) > settings.STEP_UP_MAX_AGE:
        return None
    return proof["kind"]

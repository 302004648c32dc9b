"""The OpenID Connect client side, done by Authlib: authorization code flow with PKCE (S256),
state and nonce kept in the session, discovery from the issuer, ID token signature checked
against the provider's JWKS, and its iss, aud, exp and nonce checked.

A client is built for each request from the organization's registration, so a changed
registration takes effect at once.
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.django_client import DjangoOAuth2App, OAuth
from authlib.integrations.requests_client import OAuth2Session
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django.http import HttpRequest, HttpResponse
from joserfc.errors import JoseError

from responseportal.http import OutboundRefused, PinnedAdapter, outbound_url_problem

from . import secrets
from .models import IdentityProvider
from .services import Claims, SignInRefused

logger = logging.getLogger(__name__)

SCOPE = "openid email profile"
# Sign-ins one browser session may have under way with one provider (tabs, retries).
MAX_STARTED_SIGN_INS = 5
# RFC 8176 methods that show more than a password: several factors, or a key held by the user.
MULTI_FACTOR_METHODS = frozenset({"mfa", "hwk", "swk", "otp"})


def endpoint_problem(url: str) -> str | None:
    """Why the portal should not call this provider URL, or None (see SSO_ALLOW_PRIVATE_ISSUERS)."""
    if settings.SSO_ALLOW_PRIVATE_ISSUERS:
        return None
    return outbound_url_problem(url)


class PinnedSession(OAuth2Session):
    """Authlib's session, whose every call (discovery, token, JWKS) connects to the addresses
    its host resolved to for that call, checked unless SSO_ALLOW_PRIVATE_ISSUERS."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        adapter = PinnedAdapter(checked=not settings.SSO_ALLOW_PRIVATE_ISSUERS)
        self.mount("https://", adapter)
        self.mount("http://", adapter)


class _PinnedApp(DjangoOAuth2App):
    client_cls = PinnedSession


class _PinnedOAuth(OAuth):
    oauth2_client_cls = _PinnedApp


def _client(provider: IdentityProvider):
    return _PinnedOAuth().register(
        name=f"org-{provider.organization_id}",
        overwrite=True,
        client_id=provider.client_id,
        client_secret=secrets.decrypt(provider.client_secret_encrypted),
        server_metadata_url=provider.discovery_url,
        client_kwargs={
            "scope": SCOPE,
            "code_challenge_method": "S256",
            "default_timeout": settings.SSO_HTTP_TIMEOUT,
            # The URLs called are the ones checked: a redirect could lead anywhere.
            "max_redirects": 0,
        },
    )


def _metadata(client, provider: IdentityProvider) -> dict:
    problem = endpoint_problem(provider.discovery_url)
    if problem:
        raise SignInRefused(f"The identity provider's address {problem}.")
    metadata = client.load_server_metadata()
    if metadata.get("issuer") != provider.issuer:
        raise SignInRefused(
            f"The identity provider's discovery document names the issuer "
            f"{str(metadata.get('issuer'))[:200]!r}, not {provider.issuer!r} as registered: "
            "ask an admin of your organization to check the registration."
        )
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        url = metadata.get(name)
        if not isinstance(url, str) or endpoint_problem(url):
            raise SignInRefused(f"The identity provider's {name} is missing or not usable.")
    return metadata


def _unreachable(error: Exception) -> SignInRefused:
    logger.warning("Identity provider unreachable: %s", error)
    return SignInRefused(
        "The identity provider could not be reached or answered with an error; try again "
        "later, or ask an admin of your organization."
    )


@contextmanager
def _calling_the_provider() -> Iterator[None]:
    """What calling the provider may raise, as a SignInRefused saying why."""
    try:
        yield
    except secrets.UnreadableSecret as error:
        raise SignInRefused(str(error)) from error
    except OutboundRefused as refusal:
        raise SignInRefused(f"The identity provider's address is refused: {refusal}") from None
    except (requests.RequestException, ValueError) as error:
        raise _unreachable(error) from error


def authorization_redirect(
    request: HttpRequest, provider: IdentityProvider, redirect_uri: str, login_hint: str = ""
) -> HttpResponse:
    """The redirect to the provider's authorization endpoint; state, nonce and the PKCE
    verifier stay in the session."""
    with _calling_the_provider():
        client = _client(provider)
        _metadata(client, provider)
        extra = {"login_hint": login_hint} if login_hint else {}
        _keep_recent_sign_ins(request, client.name)
        return client.authorize_redirect(request, redirect_uri, **extra)


def _keep_recent_sign_ins(request: HttpRequest, name: str) -> None:
    """Forget all but the newest sign-ins started in this session (Authlib keeps each one's
    state for an hour), so that starting over and over cannot grow the session."""
    prefix = f"_state_{name}_"
    started = sorted(
        (key for key in list(request.session.keys()) if key.startswith(prefix)),
        key=lambda key: request.session[key].get("exp", 0),
    )
    for key in started[: -(MAX_STARTED_SIGN_INS - 1)]:
        del request.session[key]


def _text_claim(userinfo: dict, name: str) -> str:
    value = userinfo.get(name, "")
    return value if isinstance(value, str) and "\x00" not in value else ""


def _email(userinfo: dict) -> str:
    email = _text_claim(userinfo, "email").strip()
    if userinfo.get("email_verified") is False:
        raise SignInRefused(
            f"The identity provider has not verified your e-mail address {email[:254]}."
        )
    local, _, domain = email.rpartition("@")
    try:
        domain = domain.encode("idna").decode("ascii").lower()
        EmailValidator()(f"{local}@{domain}")
    except (UnicodeError, ValidationError):
        raise SignInRefused(
            "The identity provider sent no usable e-mail address (claim `email`); the portal "
            "needs one to check your organization's domains."
        ) from None
    return f"{local}@{domain}"


def _groups(userinfo: dict, claim: str) -> list[str]:
    value = userinfo.get(claim, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return []
    return [group for group in value if isinstance(group, str)]


def _exchanged_code(request: HttpRequest, provider: IdentityProvider) -> dict:
    """The token the provider gives for the code it redirected back with, its ID token
    verified; a refusal of the state, the code or the ID token says which."""
    client = _client(provider)
    _metadata(client, provider)
    try:
        return client.authorize_access_token(
            request,
            claims_options={
                "iss": {"essential": True, "values": [provider.issuer]},
                # Authlib checks `azp` only: a token for another audience that names this
                # client as its authorized party must still be refused (OIDC Core 3.1.3.7).
                "aud": {"essential": True, "values": [provider.client_id]},
                "sub": {"essential": True},
                "exp": {"essential": True},
            },
            leeway=settings.SSO_CLOCK_LEEWAY,
        )
    except OAuthError as error:
        if error.error == "mismatching_state":
            raise SignInRefused(
                "This sign-in answer does not belong to a sign-in started in this browser "
                "(its state does not match): start again from the sign-in page."
            ) from error
        raise SignInRefused(
            f"The identity provider refused the sign-in ({error.error}"
            f"{': ' + error.description[:200] if error.description else ''})."
        ) from error
    except JoseError as error:
        raise SignInRefused(
            f"The identity provider's ID token was refused: {_jose_reason(error)}"
        ) from error


def verified_claims(request: HttpRequest, provider: IdentityProvider) -> tuple[Claims, dict]:
    """Complete the flow the provider redirected back from: check the state, exchange the
    code (with the PKCE verifier), verify the ID token. Returns its claims, and all of them."""
    with _calling_the_provider():
        token = _exchanged_code(request, provider)
    userinfo = token.get("userinfo")
    if not userinfo:
        raise SignInRefused("The identity provider sent no ID token: the portal needs one.")
    subject = _text_claim(userinfo, "sub")
    if not subject or len(subject) > 255:
        raise SignInRefused("The identity provider's ID token has no usable subject (sub).")
    claims = Claims(
        subject=subject,
        email=_email(userinfo),
        groups=_groups(userinfo, provider.groups_claim),
        given_name=_text_claim(userinfo, "given_name"),
        family_name=_text_claim(userinfo, "family_name"),
    )
    return claims, dict(userinfo)


def _jose_reason(error: JoseError) -> str:
    name = getattr(error, "claim", None) or ""
    reasons = {
        "iss": "it was issued by another issuer than the one registered.",
        "aud": "it was issued for another client (audience) than this portal.",
        "exp": "it has expired.",
        "nonce": "its nonce does not match this sign-in (a replayed or injected token).",
    }
    if name in reasons:
        return reasons[name]
    if type(error).__name__ == "ExpiredTokenError":
        return reasons["exp"]
    return f"{error.error}: {error.description or 'its signature or claims do not verify'}."


def multi_factor(userinfo: dict) -> str:
    """The multi-factor methods the provider says it used (`amr`), joined, or ""."""
    methods = userinfo.get("amr", [])
    if not isinstance(methods, list):
        return ""
    return ",".join(
        sorted(MULTI_FACTOR_METHODS.intersection(m for m in methods if isinstance(m, str)))
    )

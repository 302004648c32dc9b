"""Bearer-token authentication and the per-token rate limit of the API.

Every refusal is a 401 with a JSON body saying what is wrong: no token, a malformed one, an
unknown, revoked or expired one, or one whose user no longer belongs to its organization.
"""

from django.conf import settings
from django.core.cache import caches
from rest_framework import authentication, exceptions, throttling

from responseportal.http import client_ip, normalized_ip

from .models import ApiToken
from .tokens import SECRET_PATTERN, find_token, record_use

EXPECTED = "expected `Authorization: Bearer rp_…` with a token made on the API tokens page"


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None  # IsAuthenticated then answers 401 "no credentials"
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer":
            raise exceptions.AuthenticationFailed(
                f"The Authorization header is not a bearer token: {EXPECTED}."
            )
        secret = secret.strip(" ")
        if not SECRET_PATTERN.fullmatch(secret):
            raise exceptions.AuthenticationFailed(
                "The bearer token is malformed: expected `rp_` and 43 characters "
                "(letters, digits, `-` and `_`)."
            )
        token = find_token(secret)
        if token is None:
            raise exceptions.AuthenticationFailed(
                f"The bearer token is not known (mistyped, or deleted): {EXPECTED}."
            )
        if token.revoked_at is not None:
            raise exceptions.AuthenticationFailed(
                f"The token {token.name} was revoked at {token.revoked_at:%Y-%m-%d %H:%M} UTC: "
                "make a new one on the API tokens page."
            )
        if not token.is_active():
            raise exceptions.AuthenticationFailed(
                f"The token {token.name} expired at {token.expires_at:%Y-%m-%d %H:%M} UTC: "
                "make a new one on the API tokens page."
            )
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(
                f"The token's user {token.user.get_username()} is deactivated."
            )
        if token.membership is None:
            raise exceptions.AuthenticationFailed(
                f"The token's user {token.user.get_username()} is no longer a member of "
                f"{token.organization.name}: the token cannot act there."
            )
        record_use(token, normalized_ip(client_ip(request._request)))
        return token.user, token

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class PerTokenRateThrottle(throttling.SimpleRateThrottle):
    """At most API_RATE_LIMIT requests per token (e.g. "120/min"), counted in API_RATE_CACHE."""

    scope = "api_token"

    def __init__(self):
        self.cache = caches[settings.API_RATE_CACHE]
        super().__init__()

    def get_rate(self):
        return settings.API_RATE_LIMIT

    def get_cache_key(self, request, view):
        if not isinstance(request.auth, ApiToken):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.auth.pk}

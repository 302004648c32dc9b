"""HTTP helpers every app shares: who the client is, signing what the portal sends out, and
which addresses the portal may call."""

import functools
import hashlib
import hmac
import ipaddress
import urllib.request
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest

SIGNATURE_HEADER = "X-Response-Portal-Signature"


@functools.lru_cache(maxsize=4096)
def normalized_ip(address: str | None) -> str | None:
    """The address in its shortest standard form, or None if it is not an IP address."""
    if not address or "%" in address:
        return None
    try:
        parsed = ipaddress.ip_address(address.strip())
    except ValueError:
        return None
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped:
        # As Django and PostgreSQL write it.
        return f"::ffff:{parsed.ipv4_mapped}"
    return str(parsed)


def client_ip(request: HttpRequest) -> str | None:
    """The client's address: REMOTE_ADDR, unless trusted proxies say who they forwarded for.

    With TRUSTED_PROXY_COUNT = n > 0, each of the n proxies in front of the portal appended
    the address it received the request from to X-Forwarded-For, so the n-th address from the
    right is the client as the outermost trusted proxy saw it. Anything left of it was written
    by the client and proves nothing. A header too short or not an address falls back to
    REMOTE_ADDR.
    """
    remote = normalized_ip(request.META.get("REMOTE_ADDR"))
    hops = settings.TRUSTED_PROXY_COUNT
    if hops <= 0:
        return remote
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
    if len(forwarded) < hops:
        return remote
    return normalized_ip(forwarded[-hops]) or remote


def sign(body: bytes, secret: str) -> str:
    """The signature header's value for `body`: `sha256=` and the hex HMAC-SHA256."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is answered as the 3xx it is: a signed body goes to the configured URL only."""

    def redirect_request(self, *args, **kwargs):
        return None


# What the portal calls other servers with (executor and notification webhooks).
OPENER = urllib.request.build_opener(_NoRedirects)


def outbound_url_problem(url: str) -> str | None:
    """Why the portal should not call `url` (an absolute URL already checked as one), or None.

    Only https addresses on the public internet: an address inside the portal's own network
    would let whoever sets it make the server call its neighbours. NOTIFY_WEBHOOK_ALLOW_PRIVATE
    (on with DEBUG) allows any address, for a demo or a test against a local receiver.
    """
    if settings.NOTIFY_WEBHOOK_ALLOW_PRIVATE:
        return None
    parts = urlsplit(url)
    if parts.scheme != "https":
        return "is not an https address"
    host = (parts.hostname or "").rstrip(".")
    try:
        private = not ipaddress.ip_address(host).is_global
    except ValueError:
        private = host == "localhost" or host.endswith((".localhost", ".local", ".internal"))
    return "points inside the portal's own network" if private else None

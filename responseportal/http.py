"""HTTP helpers every app shares: who the client is, signing what the portal sends out, and
which addresses the portal may call."""

import functools
import hashlib
import hmac
import http.client
import ipaddress
import socket
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import requests
import requests.adapters
import urllib3
import urllib3.exceptions
import urllib3.util.connection
from django.conf import settings
from django.http import HttpRequest

from .addresses import ends_in_a_number, inet_aton, is_public, parse_ip

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


# Names that never reach the public internet (RFC 6761, RFC 8375 and common private suffixes).
_PRIVATE_NAMES = ("localhost", "local", "internal", "home.arpa", "lan", "intranet", "corp")
_NOT_PUBLIC = "inside the portal's own network or otherwise not on the public internet"


def _ascii_host(url: str) -> str | None:
    """The URL's host as resolvers see it: IDNA-mapped (fullwidth digits are digits), lower
    case, without brackets or a trailing dot; None if it has none or cannot be encoded."""
    try:
        host = urlsplit(url).hostname or ""
        if not host.isascii():
            host = host.encode("idna").decode("ascii")
    except (UnicodeError, ValueError):
        return None
    host = host.lower().removesuffix(".")
    return host or None


def outbound_url_problem(url: str) -> str | None:
    """Why the portal should not call `url` (an absolute URL already checked as one), or None.

    Only https addresses on the public internet, in any spelling: an address inside the
    portal's own network would let whoever sets it make the server call its neighbours, and
    `[::127.0.0.1]`, `[64:ff9b::7f00:1]`, `0x7f000001` and `127.1` are 127.0.0.1 too. A name
    is checked again, resolved, when the portal calls it (`open_outbound`).
    NOTIFY_WEBHOOK_ALLOW_PRIVATE (on with DEBUG) allows any address, for a demo or a test
    against a local receiver.
    """
    if settings.NOTIFY_WEBHOOK_ALLOW_PRIVATE:
        return None
    parts = urlsplit(url)
    if parts.scheme.lower() != "https":
        return "is not an https address"
    host = _ascii_host(url)
    if host is None:
        return "has no host name that can be looked up"
    address = parse_ip(host)
    if address is not None:
        return None if is_public(address) else f"points to {address}, {_NOT_PUBLIC}"
    if ends_in_a_number(host):
        read_as = inet_aton(host)
        reading = f"the address {read_as}" if read_as else "an address"
        return f"names its host by a number, which resolvers read as {reading}"
    if "." not in host:
        return f"names a host without a domain, which resolves {_NOT_PUBLIC}"
    if host.endswith(tuple(f".{suffix}" for suffix in _PRIVATE_NAMES)) or host in _PRIVATE_NAMES:
        return f"names a host {_NOT_PUBLIC}"
    return None


def masked_url(url: str) -> str:
    """`url` as everyone but the organization's admins sees it: scheme and host only.

    A webhook URL often carries its secret in the path or the query; its host says where
    notifications go without letting anyone post to it.
    """
    if not url:
        return ""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}/…"


class OutboundRefused(Exception):
    """The portal will not call this URL: the message says why, without the URL's secret."""


def _pinned_https_handler(host: str, addresses: list[str]) -> urllib.request.HTTPSHandler:
    """An HTTPS handler that connects to `host` at the `addresses` checked, not at whatever a
    second lookup would answer (DNS rebinding); certificates are still checked for `host`."""

    def connection(netloc: str, **kwargs) -> http.client.HTTPSConnection:
        made = http.client.HTTPSConnection(netloc, **kwargs)

        def create_connection(address, timeout=None, source_address=None):
            if made._tunnel_host:  # through a proxy, which resolves the name itself
                return socket.create_connection(address, timeout, source_address)
            error: OSError | None = None
            for ip in addresses:
                try:
                    return socket.create_connection((ip, address[1]), timeout, source_address)
                except OSError as failure:
                    error = failure
            raise error or OSError(f"{host} has no address")

        made._create_connection = create_connection
        return made

    class PinnedHTTPSHandler(urllib.request.HTTPSHandler):
        def https_open(self, req):
            return self.do_open(connection, req, context=self._context)

    return PinnedHTTPSHandler()


def resolved_addresses(url: str, *, checked: bool = True) -> list[str]:
    """The addresses `url`'s host resolves to now, if every one is public (unless not
    `checked`: then whatever they are).

    Raises OutboundRefused when the URL itself is refused or any address is not public (a
    name may be re-pointed at an inside address after it was saved), and URLError when the
    name does not resolve, which is worth another try.
    """
    if checked:
        problem = outbound_url_problem(url)
        if problem:
            raise OutboundRefused(f"{masked_url(url)} {problem}.")
    host = _ascii_host(url)
    if host is None:
        raise OutboundRefused(f"{masked_url(url)} has no host name that can be looked up.")
    try:
        port = urlsplit(url).port or 443
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError) as error:
        raise urllib.error.URLError(error) from error
    addresses = list(dict.fromkeys(info[4][0] for info in found))
    for text in addresses if checked else ():
        address = ipaddress.ip_address(text)
        if not is_public(address):
            raise OutboundRefused(f"{masked_url(url)} resolves to {address}, {_NOT_PUBLIC}.")
    return addresses


def open_outbound(call: urllib.request.Request, *, timeout: float):
    """`OPENER.open(call)` for a URL an organization gave the portal (its webhook).

    Unless NOTIFY_WEBHOOK_ALLOW_PRIVATE, the host is resolved now and every address checked
    (OutboundRefused otherwise), and the connection goes to the addresses checked.
    """
    if settings.NOTIFY_WEBHOOK_ALLOW_PRIVATE:
        return OPENER.open(call, timeout=timeout)
    addresses = resolved_addresses(call.full_url)
    host = _ascii_host(call.full_url)
    opener = urllib.request.build_opener(_NoRedirects, _pinned_https_handler(host, addresses))
    return opener.open(call, timeout=timeout)


class PinnedAdapter(requests.adapters.HTTPAdapter):
    """A `requests` transport for calls to servers an organization named (its identity
    provider): each call's host is resolved once, its addresses checked unless not `checked`
    (`resolved_addresses`), and the connection made to those addresses, not to whatever a
    second lookup would answer (DNS rebinding). Certificates are still checked for the host.

    Raises OutboundRefused for a refused address, requests' ConnectionError for a name that
    does not resolve. Through a proxy, the proxy resolves the name itself, as for webhooks.
    """

    def __init__(self, *, checked: bool = True):
        self.checked = checked
        self._pins: dict[str, list[str]] = {}
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        pins = self._pins

        def pinned_connection(base: type) -> type:
            class Pinned(base):
                def _new_conn(self):
                    host = self.host.lower().strip("[]").removesuffix(".")
                    error: OSError | None = None
                    for ip in pins.get(host, ()):
                        try:
                            return urllib3.util.connection.create_connection(
                                (ip, self.port),
                                self.timeout,
                                source_address=self.source_address,
                                socket_options=self.socket_options,
                            )
                        except OSError as failure:
                            error = failure
                    raise urllib3.exceptions.NewConnectionError(
                        self, f"Failed to establish a new connection: {error or 'no address'}"
                    )

            return Pinned

        self.poolmanager.pool_classes_by_scheme = {
            scheme: type(
                f"Pinned{pool.__name__}",
                (pool,),
                {"ConnectionCls": pinned_connection(pool.ConnectionCls)},
            )
            for scheme, pool in self.poolmanager.pool_classes_by_scheme.items()
        }

    def send(self, request: requests.PreparedRequest, *args, **kwargs) -> requests.Response:
        try:
            addresses = resolved_addresses(request.url, checked=self.checked)
        except urllib.error.URLError as error:
            raise requests.ConnectionError(error.reason, request=request) from error
        self._pins[_ascii_host(request.url)] = addresses
        return super().send(request, *args, **kwargs)

"""Single sign-on calls only the identity provider's checked addresses: each call (discovery,
token, JWKS) resolves the provider's host once, refuses an address inside the portal's
network, and connects to the address it checked, not to a second answer (DNS rebinding)."""

import html
import socket

import pytest
import requests
import urllib3.util.connection
from django.test import Client

from sso.models import IdentityProvider
from sso.oidc import PinnedSession
from sso.secrets import encrypt

pytestmark = pytest.mark.django_db
HOST = "idp.example.com"
ISSUER = f"https://{HOST}/realms/acme"
PUBLIC = "93.184.216.34"


@pytest.fixture(autouse=True)
def strict(settings):
    settings.SSO_ALLOW_PRIVATE_ISSUERS = False
    settings.NOTIFY_WEBHOOK_ALLOW_PRIVATE = False


@pytest.fixture
def dns(monkeypatch):
    """The provider's host answers what the test says; later lookups may answer otherwise."""
    answers: list[list[str]] = []
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host != HOST:
            return real(host, port, *args, **kwargs)
        addresses = answers.pop(0) if len(answers) > 1 else answers[0]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


@pytest.fixture
def connected(monkeypatch):
    """Where the portal's HTTP client opens connections to; none succeeds."""
    addresses = []

    def create_connection(address, *args, **kwargs):
        addresses.append(address)
        raise ConnectionRefusedError("no server in the test")

    monkeypatch.setattr(urllib3.util.connection, "create_connection", create_connection)
    return addresses


@pytest.fixture
def registration(acme):
    return IdentityProvider.objects.create(
        organization=acme,
        issuer=ISSUER,
        client_id="portal",
        client_secret_encrypted=encrypt("x"),
        allowed_domains=["acme.test"],
        role_mapping={"g": "operator"},
    )


def test_discovery_connects_to_the_address_checked_not_to_a_second_answer(
    registration, dns, connected
):
    dns.extend([[PUBLIC], ["127.0.0.1"]])

    answer = Client().get("/sso/acme/login/")

    assert answer.status_code == 403
    assert "could not be reached" in answer.content.decode()
    assert connected == [(PUBLIC, 443)]


def test_a_provider_whose_name_resolves_inside_the_network_is_not_called(
    registration, dns, connected
):
    dns.append([PUBLIC, "10.0.0.5"])

    answer = Client().get("/sso/acme/login/")

    assert answer.status_code == 403
    assert (
        f"https://{HOST}/… resolves to 10.0.0.5, inside the portal's own network"
        in html.unescape(answer.content.decode())
    )
    assert connected == []


@pytest.mark.parametrize(
    "path", ["/protocol/openid-connect/token", "/protocol/openid-connect/certs"]
)
def test_every_call_of_the_session_is_pinned(dns, connected, path):
    # Authlib makes its token and JWKS calls, like discovery, with the app's session class.
    dns.extend([[PUBLIC], ["127.0.0.1"]])
    with PinnedSession() as session, pytest.raises(requests.ConnectionError):
        session.get(f"{ISSUER}{path}", withhold_token=True)
    assert connected == [(PUBLIC, 443)]


def test_each_call_looks_the_name_up_again_and_checks_the_answer(dns, connected):
    # Re-pointed between two calls: the second is refused before any connection.
    dns.extend([[PUBLIC], ["10.1.2.3"]])
    with PinnedSession() as session:
        with pytest.raises(requests.ConnectionError):
            session.get(f"{ISSUER}/.well-known/openid-configuration", withhold_token=True)
        with pytest.raises(Exception, match="resolves to 10.1.2.3"):
            session.get(f"{ISSUER}/protocol/openid-connect/certs", withhold_token=True)
    assert connected == [(PUBLIC, 443)]

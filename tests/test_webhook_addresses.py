"""Webhook addresses (issue 17): no address inside the portal's network in any spelling, checked
again when the portal calls it, and the URL (often a secret) shown in full to admins only."""

import json
import socket
import urllib.error
import urllib.request

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from approvals import notifications
from approvals.models import ApprovalSettings, Notification
from audit.models import AuditEvent
from responseportal.http import (
    OutboundRefused,
    masked_url,
    open_outbound,
    outbound_url_problem,
    resolved_addresses,
)

from .approvals_helpers import submit
from .conftest import client_for
from .test_approval_settings import form_data
from .test_notification_webhook import Receiver, receiver, use_webhook  # noqa: F401 (fixture)

SECRET_PATH = "/hooks/T0KEN-d41d8cd98f00b204e9800998ecf8427e"
HOOK = f"https://hooks.example.com{SECRET_PATH}?channel=soc"


@pytest.fixture
def strict(settings):
    settings.NOTIFY_WEBHOOK_ALLOW_PRIVATE = False
    return settings


# Each address with the IPv4 or IPv6 address it reaches, written out by hand.
NOT_PUBLIC = [
    ("https://[::127.0.0.1]/", "127.0.0.1"),
    ("https://[64:ff9b::7f00:1]/", "127.0.0.1"),
    ("https://[64:ff9b::127.0.0.1]/", "127.0.0.1"),
    ("https://[::ffff:127.0.0.1]/", "127.0.0.1"),
    ("https://[::ffff:7f00:1]/", "127.0.0.1"),
    ("https://[0:0:0:0:0:FFFF:7F00:0001]/", "127.0.0.1"),
    ("https://[::ffff:0:127.0.0.1]/", "127.0.0.1"),
    ("https://[::ffff:a9fe:a9fe]/latest", "169.254.169.254"),
    ("https://[::10.0.0.5]/", "10.0.0.5"),
    ("https://224.0.0.1/", "224.0.0.1"),
    ("https://239.255.255.250/", "239.255.255.250"),
    ("https://255.255.255.255/", "255.255.255.255"),
    ("https://240.0.0.1/", "240.0.0.1"),
    ("https://0.0.0.0/", "0.0.0.0"),  # noqa: S104 (an address refused, not bound)
    ("https://100.64.0.1/", "100.64.0.1"),
    ("https://192.0.2.1/", "192.0.2.1"),
    ("https://198.18.0.1/", "198.18.0.1"),
    ("https://127.0.0.1./", "127.0.0.1"),
    ("https://１２７.０.０.１/", "127.0.0.1"),
    ("https://[::]/", "::"),
    ("https://[::1]:8443/", "::1"),
    ("https://[ff02::1]/", "ff02::1"),
    ("https://[ff0e::1]/", "ff0e::1"),
    ("https://[fc00::1]/", "fc00::1"),
    ("https://[fe80::1]/", "fe80::1"),
    ("https://[2001:db8::1]/", "2001:db8::1"),
    ("https://[100::1]/", "100::1"),
    ("https://[64:ff9b:1::a00:5]/", "64:ff9b:1::a00:5"),
    ("https://[2002:7f00:1::1]/", "2002:7f00:1::1"),
    ("https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "2001:0:4136:e378:8000:63bf:3fff:fdd2"),
]


@pytest.mark.parametrize(("url", "address"), NOT_PUBLIC)
def test_no_spelling_of_an_address_outside_the_internet_is_accepted(strict, url, address):
    assert outbound_url_problem(url) == (
        f"points to {address}, inside the portal's own network or otherwise not on the "
        "public internet"
    )


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("https://0x7f000001/", "127.0.0.1"),
        ("https://2130706433/", "127.0.0.1"),
        ("https://127.1/", "127.0.0.1"),
        ("https://0177.0.0.1/", "127.0.0.1"),
        ("https://0x7f.0.0.1/", "127.0.0.1"),
        ("https://8.8.8.0x8/", "8.8.8.8"),
        ("https://0XA9FEA9FE/", "169.254.169.254"),
    ],
)
def test_a_number_where_a_host_name_belongs_is_refused(strict, url, address):
    # Even a public one: a number is an address, and addresses are written as addresses.
    assert outbound_url_problem(url) == (
        f"names its host by a number, which resolvers read as the address {address}"
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://localhost/",
        "https://LOCALHOST./",
        "https://api.localhost/",
        "https://printer.local/",
        "https://vault.internal/",
        "https://router.home.arpa/",
        "https://intranet/",
    ],
)
def test_names_that_never_leave_the_network_are_refused(strict, url):
    assert "inside the portal's own network" in outbound_url_problem(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://8.8.8.8/hook",
        "https://[2606:4700:4700::1111]/hook",
        "https://[::ffff:8.8.8.8]/hook",
        "https://[64:ff9b::8.8.8.8]/hook",
        "https://HOOKS.example.com./hook",
        HOOK,
    ],
)
def test_public_addresses_are_accepted(strict, url):
    assert outbound_url_problem(url) is None


def test_the_form_refuses_the_spellings_the_adversarial_run_saved(strict):
    for url in ["https://[::127.0.0.1]/", "https://[64:ff9b::7f00:1]/", "https://224.0.0.1/"]:
        with pytest.raises(ValidationError) as caught:
            notifications.validate_webhook_url(url)
        assert caught.value.messages[0].startswith(f"`{url}` points to ")
        assert caught.value.messages[0].endswith(
            "expected an https address such as https://hooks.example.com/portal."
        )


@pytest.mark.django_db
def test_the_settings_page_refuses_them(strict, admin, acme):
    response = client_for(admin).post(
        reverse("approval_settings", args=["acme"]),
        form_data(acme, notify_webhook_url="https://[64:ff9b::7f00:1]/"),
    )
    assert response.status_code == 200
    assert "points to 127.0.0.1" in response.content.decode()
    assert not ApprovalSettings.objects.filter(organization=acme).exists()


# When the portal calls: the name is resolved, every address checked, and the connection made
# to the address checked.


@pytest.fixture
def dns(monkeypatch):
    """hooks.example.com answers what the test says; later lookups may answer otherwise."""
    answers: list[list[str]] = []
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host != "hooks.example.com":
            return real(host, port, *args, **kwargs)
        addresses = answers.pop(0) if len(answers) > 1 else answers[0]
        return [
            (
                socket.AF_INET6 if ":" in a else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (a, port),
            )
            for a in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


@pytest.mark.parametrize(
    ("answer", "refused"),
    [
        (["127.0.0.1"], "127.0.0.1"),
        (["93.184.216.34", "10.0.0.5"], "10.0.0.5"),
        (["::ffff:169.254.169.254"], "::ffff:a9fe:a9fe"),
        (["2606:2800:220:1::1", "fd00::1"], "fd00::1"),
    ],
)
def test_a_name_that_resolves_inside_the_network_is_refused_when_called(
    strict, dns, answer, refused
):
    dns.append(answer)
    with pytest.raises(OutboundRefused) as caught:
        resolved_addresses(HOOK)
    assert str(caught.value) == (
        f"https://hooks.example.com/… resolves to {refused}, inside the portal's own network "
        "or otherwise not on the public internet."
    )


def test_a_refused_url_names_no_secret(strict):
    with pytest.raises(OutboundRefused) as caught:
        resolved_addresses(f"https://[::127.0.0.1]{SECRET_PATH}")
    assert SECRET_PATH not in str(caught.value)
    assert str(caught.value).startswith("https://[::127.0.0.1]/… points to 127.0.0.1")


def test_the_connection_goes_to_the_address_checked_not_to_a_second_answer(
    strict, dns, monkeypatch
):
    # DNS rebinding: the first answer is public, every later one points at the loopback.
    dns.extend([["93.184.216.34"], ["127.0.0.1"]])
    connected = []

    def create_connection(address, *args, **kwargs):
        connected.append(address)
        raise ConnectionRefusedError("no server in the test")

    monkeypatch.setattr(socket, "create_connection", create_connection)
    call = urllib.request.Request(HOOK, data=b"{}", method="POST")
    with pytest.raises(urllib.error.URLError):
        open_outbound(call, timeout=2)
    assert connected == [("93.184.216.34", 443)]


def test_a_name_that_does_not_resolve_is_worth_another_try(strict, monkeypatch):
    def getaddrinfo(*args, **kwargs):
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with pytest.raises(urllib.error.URLError):
        resolved_addresses(HOOK)


@pytest.mark.django_db
def test_the_notification_webhook_is_not_posted_to_a_name_resolving_to_loopback(
    receiver,  # noqa: F811 (the fixture)
    strict,
    dns,
    acme,
    operator,
):
    # The receiver listens on the loopback; the saved name is re-pointed at it after saving.
    port = receiver.split(":")[2].split("/")[0]
    use_webhook(acme, f"https://hooks.example.com:{port}{SECRET_PATH}")
    dns.append(["127.0.0.1"])
    request = submit(acme, operator)
    with pytest.raises(OutboundRefused, match="resolves to 127.0.0.1"):
        notifications.send_webhook("pending", request.pk)
    assert Receiver.calls == []


@pytest.mark.django_db
def test_the_outbox_records_the_refusal_without_the_secret(
    strict, dns, acme, operator, django_capture_on_commit_callbacks
):
    use_webhook(acme, HOOK)
    dns.append(["10.1.2.3"])
    with django_capture_on_commit_callbacks(execute=True):
        request = submit(acme, operator)
    notification = Notification.objects.get(request_id=request.pk)
    assert notification.webhook_sent_at is None
    assert "OutboundRefused: https://hooks.example.com/… resolves to 10.1.2.3" in (
        notification.last_error
    )
    assert SECRET_PATH not in notification.last_error


# The URL is a secret: masked for everyone but the organization's admins.


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (HOOK, "https://hooks.example.com/…"),
        ("https://user:pa55@Hooks.Example.com:8443/x?token=1", "https://hooks.example.com:8443/…"),
        ("https://[2606:4700::1111]/x", "https://[2606:4700::1111]/…"),
        ("http://127.0.0.1:9000/hooks/portal", "http://127.0.0.1:9000/…"),
        ("", ""),
    ],
)
def test_the_masked_url_keeps_scheme_host_and_port_only(url, masked):
    assert masked_url(url) == masked


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("who", "sees_it"), [("admin", True), ("operator", False), ("auditor", False)]
)
def test_only_admins_see_the_webhook_url_in_full(cast, acme, who, sees_it):
    use_webhook(acme, HOOK)
    page = client_for(cast[who]).get(reverse("approval_settings", args=["acme"]))
    assert page.status_code == 200
    content = page.content.decode()
    assert (SECRET_PATH in content) is sees_it
    assert ("https://hooks.example.com/…" in content) is (not sees_it)


@pytest.mark.django_db
def test_the_audit_log_keeps_the_host_only(strict, admin, acme):
    client = client_for(admin)
    url = reverse("approval_settings", args=["acme"])
    client.post(url, form_data(acme, notify_webhook_url=HOOK))
    other = "https://other.example.com/hooks/S3CRET-2"
    client.post(url, form_data(acme, notify_webhook_url=other))
    assert ApprovalSettings.objects.get(organization=acme).notify_webhook_url == other
    changes = [
        event.data["notify_webhook_url"]
        for event in AuditEvent.objects.filter(verb="settings.changed").order_by("pk")
    ]
    assert changes == [
        {"before": "", "after": "https://hooks.example.com/…"},
        {"before": "https://hooks.example.com/…", "after": "https://other.example.com/…"},
    ]
    everything = json.dumps([event.data for event in AuditEvent.objects.all()])
    assert SECRET_PATH not in everything
    assert "S3CRET-2" not in everything

"""The optional notification webhook of an organization (DESIGN §3)."""

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from approvals import notifications
from approvals.models import ApprovalSettings
from audit.models import AuditEvent

from .approvals_helpers import submit
from .conftest import client_for
from .test_approval_settings import form_data

pytestmark = pytest.mark.django_db
SECRET = "a-shared-secret-for-the-test"


class Receiver(BaseHTTPRequestHandler):
    calls: list = []
    answer = 204

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.calls.append((dict(self.headers), body))
        self.send_response(Receiver.answer)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver(settings):
    settings.NOTIFY_WEBHOOK_ALLOW_PRIVATE = True  # the receiver listens on loopback
    settings.NOTIFY_WEBHOOK_SECRET = SECRET
    Receiver.calls, Receiver.answer = [], 204
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/portal"
    server.shutdown()
    server.server_close()


def use_webhook(organization, url):
    settings = ApprovalSettings.for_organization(organization)
    settings.notify_webhook_url = url
    settings.save()


@pytest.mark.parametrize(
    "address",
    ["ftp://hooks.example.com/x", "not a url", "http://hooks.example.com/x"],
)
def test_it_refuses_what_is_not_an_https_address(settings, address):
    settings.NOTIFY_WEBHOOK_ALLOW_PRIVATE = False
    with pytest.raises(ValidationError, match="https"):
        notifications.validate_webhook_url(address)


@pytest.mark.parametrize(
    "address",
    [
        "https://10.0.0.5/hook",
        "https://127.0.0.1:8443/hook",
        "https://[::1]/hook",
        "https://169.254.169.254/latest",
        "https://localhost/hook",
        "https://vault.internal/hook",
    ],
)
def test_it_refuses_addresses_inside_the_portals_network(settings, address):
    settings.NOTIFY_WEBHOOK_ALLOW_PRIVATE = False
    with pytest.raises(ValidationError, match="inside the portal's own network"):
        notifications.validate_webhook_url(address)


def test_it_accepts_a_public_https_address(settings):
    settings.NOTIFY_WEBHOOK_ALLOW_PRIVATE = False
    url = "https://hooks.example.com/portal?channel=soc"
    assert notifications.validate_webhook_url(url) == url


def test_an_admin_sets_it_on_the_settings_page_and_it_is_audited(settings, admin, acme):
    settings.NOTIFY_WEBHOOK_ALLOW_PRIVATE = False
    client = client_for(admin)
    url = reverse("approval_settings", args=["acme"])
    bad = client.post(url, form_data(acme, notify_webhook_url="https://10.1.2.3/x"))
    assert "inside the portal&#x27;s own network" in bad.content.decode()
    assert not ApprovalSettings.objects.filter(organization=acme).exists()
    client.post(url, form_data(acme, notify_webhook_url="https://hooks.example.com/portal"))
    assert ApprovalSettings.objects.get(organization=acme).notify_webhook_url == (
        "https://hooks.example.com/portal"
    )
    change = AuditEvent.objects.get(verb="settings.changed").data
    # The URL is often a secret: the audit log keeps where it points, not the path.
    assert change["notify_webhook_url"] == {"before": "", "after": "https://hooks.example.com/…"}


def test_a_pending_request_is_posted_as_signed_json(
    receiver, acme, operator, django_capture_on_commit_callbacks
):
    use_webhook(acme, receiver)
    with django_capture_on_commit_callbacks(execute=True):
        request = submit(acme, operator, endpoints=["web-01.acme.test", "web-02.acme.test"])
    assert len(Receiver.calls) == 1
    headers, body = Receiver.calls[0]
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Response-Portal-Signature"] == f"sha256={expected}"
    assert headers["X-Response-Portal-Event"] == "pending"
    payload = json.loads(body)
    assert payload["event"] == "pending"
    assert payload["request"]["uuid"] == str(request.uuid)
    assert payload["request"]["targets"] == ["web-01.acme.test", "web-02.acme.test"]
    assert payload["request"]["url"].endswith(f"/orgs/acme/requests/{request.uuid}/")


def test_without_a_webhook_nothing_is_posted(
    receiver, acme, operator, admin, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        request = submit(acme, operator)
    assert callbacks  # the e-mail was scheduled; only the webhook call was not
    [notification] = request.notifications.all()
    assert (notification.email_due, notification.webhook_due) == (True, False)
    assert notification.sent_at is not None
    assert Receiver.calls == []


def test_a_refusing_webhook_is_logged_and_blocks_nothing(receiver, acme, operator, caplog):
    use_webhook(acme, receiver)
    Receiver.answer = 410
    request = submit(acme, operator)
    assert request.status == "pending"
    assert notifications.send_webhook("pending", request.pk) == 410
    assert "refused the pending notice: HTTP 410" in caplog.text

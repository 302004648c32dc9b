"""The busiest pages build their rows in Python, to cost little more than their SQL, and their
HTML stays what the templates rendered: each test renders the rows as the templates did, with
Django's template engine, and compares with the page."""

import re
from pathlib import Path

import pytest
from django.template import engines
from django.urls import reverse
from django.utils import timezone

from approvals import services
from approvals.models import RequestTarget, TargetStatus
from audit.chain import record
from audit.context import AuditContext
from audit.describe import in_words
from audit.models import AuditEvent, Source
from responseportal.middleware import TIME_ZONE_COOKIE

from .approvals_helpers import submit
from .conftest import client_for

pytestmark = pytest.mark.django_db

# The rows as the templates wrote them, before they were built in Python.
REFERENCES = Path(__file__).parent / "page_rendering"


def normalized(html: str) -> str:
    """The markup without the whitespace between tags, and each run of spaces as one."""
    return re.sub(r"\s+", " ", re.sub(r">\s+<", "><", html)).strip()


def tbody(html: str) -> str:
    found = re.search(r"<tbody>(.*?)</tbody>", html, re.DOTALL)
    assert found, "the page has no table body"
    return normalized(found.group(1))


def reference(name: str, context: dict) -> str:
    template = (REFERENCES / name).read_text()
    return normalized(engines["django"].from_string(template).render(context))


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata", "America/St_Johns"])
def test_the_audit_log_rows_are_what_the_template_rendered(admin, operator, acme, client, zone):
    action_request = submit(acme, operator, endpoints=["web-01.acme.test", "db-02.acme.test"])
    web = AuditContext(source=Source.WEB, ip_address="2001:db8::7", user_agent="Firefox")
    record(acme, "request.approved", actor=admin, role="admin", action_request=action_request)
    record(acme, "settings.changed", actor=admin, role="", data={"n": 1}, context=web)
    record(acme, "request.rejected", actor_username="<b>&'\"", action_request=action_request)
    record(acme, "audit.exported", actor=admin, role="admin", context=web)
    client = client_for(admin)
    client.cookies[TIME_ZONE_COOKIE] = zone
    response = client.get(reverse("audit_log", args=["acme"]))
    assert response.status_code == 200
    events = list(
        AuditEvent.objects.filter(organization=acme).select_related("request").order_by("-sequence")
    )
    with timezone.override(zone):
        expected = reference(
            "audit_log_rows.html", {"lines": in_words(events), "organization": acme}
        )
    assert tbody(response.content.decode()) == expected
    assert "&lt;b&gt;&amp;&#x27;&quot;" in expected  # the username, escaped


def section(html: str, start: str, end: str) -> str:
    found = re.search(re.escape(start) + "(.*?)" + re.escape(end), html, re.DOTALL)
    assert found, f"the page has no {start!r}"
    return normalized(found.group(1))


@pytest.mark.parametrize("zone", ["UTC", "Australia/Adelaide"])
def test_a_requests_targets_and_timeline_are_what_the_template_rendered(
    admin, operator, acme, zone
):
    endpoints = ["web-01.acme.test", "10.0.0.7", "db-<02>.acme.test", "mail&01.acme.test"]
    action_request = submit(acme, operator, endpoints=endpoints)
    web = AuditContext(source=Source.WEB, ip_address="192.0.2.9", user_agent="Firefox")
    services.reject_request(
        action_request.pk, actor=admin, reason="Not <this> one & not now", context=web
    )
    record(acme, "request.reviewed", actor=admin, role="", action_request=action_request)
    targets = RequestTarget.objects.filter(request=action_request).order_by("position")
    targets.filter(position=1).update(status=TargetStatus.FAILED, message="Agent <offline>")
    targets.filter(position=2).update(status=TargetStatus.SKIPPED, message="")
    client = client_for(admin)
    client.cookies[TIME_ZONE_COOKIE] = zone
    response = client.get(reverse("request_detail", args=["acme", action_request.uuid]))
    assert response.status_code == 200
    html = response.content.decode()
    events = action_request.events.order_by("timestamp", "id")
    with timezone.override(zone):
        expected_targets = reference("request_targets.html", {"targets": list(targets)})
        expected_timeline = reference("request_timeline.html", {"lines": in_words(events)})
    assert tbody(html) == expected_targets
    assert section(html, '<ol class="list-group list-group-numbered mb-4">', "</ol>") == (
        expected_timeline
    )
    assert "Reason: Not &lt;this&gt; one &amp; not now" in expected_timeline
    assert "<code>db-&lt;02&gt;.acme.test</code>" in expected_targets

"""The busiest pages build their rows in Python, to cost little more than their SQL, and their
HTML stays what the templates rendered: each test renders the rows as the templates did, with
Django's template engine, and compares with the page."""

import re
from pathlib import Path

import pytest
from django.template import engines
from django.urls import reverse
from django.utils import timezone

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

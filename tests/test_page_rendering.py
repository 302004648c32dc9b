"""The busiest pages build their rows in Python, to cost little more than their SQL, and their
HTML stays what the templates rendered: each test renders the rows as the templates did, with
Django's template engine, and compares with the page."""

import re

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

# The audit log's rows as the template wrote them, before they were built in Python.
AUDIT_ROWS = """{% for line in lines %}{% with event=line.event %}
  <tr>
    <td class="text-nowrap">{% include "_time.html" with moment=event.timestamp format="Y-m-d H:i:s" %}</td>
    <td class="text-break">{{ line.sentence }}
      <div class="small text-body-secondary"><code>{{ event.verb }}</code>{% if event.action_key %} · <code>{{ event.action_key }}</code>{% endif %}{% if event.actor_username %} · {{ event.actor_username }}{% if event.role %} ({{ event.role }}){% endif %}{% endif %}</div></td>
    <td>{% if event.request %}<a href="{% url 'request_detail' organization.slug event.request.uuid %}" title="{{ event.request.uuid }}"><code>{{ event.request.uuid|stringformat:"s"|slice:":8" }}</code></a>{% endif %}</td>
    <td>{{ event.get_source_display }}{% if event.ip_address %}<br><span class="small text-body-secondary text-break">{{ event.ip_address }}</span>{% endif %}</td>
    <td><a href="{% url 'audit_event' organization.slug event.pk %}" aria-label="Event {{ event.sequence }}: details">#{{ event.sequence }}</a></td>
  </tr>
  {% endwith %}{% endfor %}"""


def normalized(html: str) -> str:
    """The markup without the whitespace between tags, and each run of spaces as one."""
    return re.sub(r"\s+", " ", re.sub(r">\s+<", "><", html)).strip()


def tbody(html: str) -> str:
    found = re.search(r"<tbody>(.*?)</tbody>", html, re.DOTALL)
    assert found, "the page has no table body"
    return normalized(found.group(1))


def reference(template: str, context: dict) -> str:
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
        expected = reference(AUDIT_ROWS, {"lines": in_words(events), "organization": acme})
    assert tbody(response.content.decode()) == expected
    assert "&lt;b&gt;&amp;&#x27;&quot;" in expected  # the username, escaped

"""The busiest pages build their rows in Python, to cost little more than their SQL, and their
HTML stays what the templates rendered: each test renders the rows as the templates did, with
Django's template engine, and compares with the page."""

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.template import engines
from django.urls import reverse, set_script_prefix
from django.utils import timezone

from actions.models import ResponseAction
from approvals import services
from approvals.models import ActionRequest, ApprovalSettings, RequestTarget, TargetStatus
from audit.chain import record
from audit.context import AuditContext
from audit.describe import in_words
from audit.models import AuditEvent, Source
from audit.views import AuditFilter
from responseportal.middleware import TIME_ZONE_COOKIE
from responseportal.templatetags.inputs import input_html
from responseportal.templatetags.links import cached_reverse

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


@pytest.mark.parametrize("listing", [{}, {"status": "all"}])
def test_the_queue_rows_are_what_the_template_rendered(
    admin, second_admin, operator, acme, listing
):
    settings = ApprovalSettings.for_organization(acme)
    settings.approvals_needed = {"isolate_endpoint": 2}
    settings.save()
    two_person = submit(acme, operator)
    services.approve_request(two_person.pk, actor=second_admin)
    endpoints = [f"web-{n:02}.acme.test" for n in range(5)]
    submit(acme, operator, key="scan_for_malware", endpoints=endpoints, summary="<b>Scan</b>\nall")
    own = submit(acme, operator, key="scan_for_malware")
    ActionRequest.objects.filter(pk=own.pk).update(requester=admin)  # not theirs to decide
    now = timezone.now()
    closing = submit(acme, operator, key="scan_for_malware", endpoints=["db-01.acme.test"])
    ActionRequest.objects.filter(pk=closing.pk).update(
        submitted_at=now - timedelta(hours=70), expires_at=now + timedelta(hours=2)
    )
    overdue = submit(acme, operator, key="scan_for_malware", endpoints=["db-02.acme.test"])
    ActionRequest.objects.filter(pk=overdue.pk).update(expires_at=now - timedelta(minutes=1))
    rejected = submit(acme, operator, key="scan_for_malware", endpoints=["db-03.acme.test"])
    services.reject_request(rejected.pk, actor=second_admin, reason="No")
    client = client_for(admin)
    client.cookies[TIME_ZONE_COOKIE] = "Asia/Kathmandu"
    response = client.get(reverse("queue", args=["acme"]), listing)
    assert response.status_code == 200
    page = response.context["page"]
    assert len(page.object_list) == (6 if listing else 5)
    with timezone.override("Asia/Kathmandu"):
        expected = reference("queue_rows.html", {"page": page, "organization": acme})
    assert tbody(response.content.decode()) == expected
    assert "1 of 2 approvals; needs 1 more approval" in expected
    assert "Expires soon" in expected
    assert "and 2 more" in expected
    assert "&lt;b&gt;Scan&lt;/b&gt;<br>all" in expected


def test_a_blank_filter_input_is_kept_and_one_with_a_value_is_not(admin, acme):
    # A first form, blank, then one with values: each input as Django renders it.
    blank = AuditFilter({"before": "12"})
    assert blank.is_valid()
    filled = AuditFilter({"actor": "acme-admin", "verb": "request.approved", "since": "x"})
    assert not filled.is_valid()
    for form in (blank, filled, AuditFilter({"before": "12"})):
        for name in ("since", "actor", "verb", "action", "q"):
            assert input_html(form[name]) == str(form[name])
    assert 'value="acme-admin"' in input_html(filled["actor"])
    assert 'aria-invalid="true"' in input_html(filled["since"])
    assert '<option value="request.approved" selected>' in input_html(filled["verb"])
    # The catalog renamed: the blank action input names it so.
    action = ResponseAction.objects.get(key="isolate_endpoint")
    before = input_html(AuditFilter({})["action"])
    action.name = "Isolate <Endpoint> now"
    action.save()
    after = input_html(AuditFilter({})["action"])
    assert ">Isolate Endpoint</option>" in before
    assert ">Isolate &lt;Endpoint&gt; now</option>" in after


def test_the_navigation_links_are_the_reversed_urls(admin, acme):
    html = client_for(admin).get(reverse("audit_log", args=["acme"])).content.decode()
    for url in (
        reverse("home"),
        reverse("security"),
        reverse("api_tokens"),
        reverse("logout"),
        reverse("second_factor_policy", args=["acme"]),
        reverse("organization_api_tokens", args=["acme"]),
        reverse("sso_settings", args=["acme"]),
        reverse("queue", args=["acme"]),
    ):
        assert f'href="{url}"' in html or f'action="{url}"' in html
    assert cached_reverse("request_list", "acme") == reverse("request_list", args=["acme"])
    set_script_prefix("/portal/")
    try:
        assert cached_reverse("request_list", "acme") == "/portal/orgs/acme/requests/"
    finally:
        set_script_prefix("/")

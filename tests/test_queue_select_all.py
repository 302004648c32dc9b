"""Select all in the pending queue: a header checkbox for the page, and "select all N
matching" which decides every request the filter matches, after a confirmation page."""

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from approvals import services, views
from approvals.models import ActionRequest, RequestStatus
from audit.models import AuditEvent
from responseportal.models import Role

from .approvals_helpers import submit
from .conftest import client_for
from .factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

QUEUE = "/orgs/acme/queue/"


def pending_requests(acme, operator, count, key="isolate_endpoint", prefix="ws"):
    endpoints = {"isolate_endpoint": None, "scan_for_malware": None}
    assert key in endpoints
    return [
        submit(acme, operator, key=key, endpoints=[f"{prefix}-{n}.acme.test"]) for n in range(count)
    ]


def approved_events():
    return AuditEvent.objects.filter(verb="request.approved")


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


def test_the_header_checkbox_and_its_script_come_from_a_static_file(acme, operator, admin):
    pending_requests(acme, operator, 2)
    html = client_for(admin).get(QUEUE).content.decode()

    assert 'id="select-all-shown"' in html
    assert '<script src="/static/js/queue_select.js" defer></script>' in html
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []  # no inline script (CSP)
    script = Path(settings.BASE_DIR, "static/js/queue_select.js").read_text()
    assert 'getElementById("select-all-shown")' in script and '[name="requests"]' in script


@pytest.mark.parametrize("count,offered", [(50, False), (51, True)])
def test_select_all_matching_is_offered_when_the_filter_matches_more_than_a_page(
    acme, operator, admin, count, offered
):
    pending_requests(acme, operator, count)
    html = client_for(admin).get(QUEUE).content.decode()
    assert (f"Select all {count} matching requests" in html) is offered
    assert ('name="all_matching"' in html) is offered


def test_sixty_requests_approved_in_three_clicks(acme, operator, admin):
    chosen = pending_requests(acme, operator, 40) + pending_requests(
        acme, operator, 20, key="scan_for_malware", prefix="pc"
    )
    client = client_for(admin)
    assert "Select all 60 matching requests" in client.get(QUEUE).content.decode()

    # Click 1 ticks "select all 60 matching", click 2 is "Approve selected".
    confirm = client.post(
        QUEUE, {"all_matching": "1", "decision": "approve", "action": "", "q": "", "reason": ""}
    )
    assert confirm.status_code == 200
    html = confirm.content.decode()
    assert "Approve 60 requests?" in html
    assert "60 pending requests of Acme Corporation match the filter" in html
    mix = re.findall(r"<tr><td>(.*?)</td><td class=\"text-end\">(\d+)</td></tr>", html)
    assert mix == [("Isolate Endpoint", "40"), ("Scan for Malware", "20")]
    assert not approved_events().exists()
    assert ActionRequest.objects.filter(status=RequestStatus.PENDING).count() == 60

    # Click 3: the confirmation page's button, with the fields that page carries.
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', html))
    done = client.post(QUEUE, fields, follow=True)
    assert "Approved 60 requests." in messages_of(done)
    assert ActionRequest.objects.filter(status=RequestStatus.APPROVED).count() == 60
    events = approved_events()
    assert events.count() == 60
    assert sorted(events.values_list("request_id", flat=True)) == sorted(r.pk for r in chosen)
    assert set(events.values_list("actor_id", flat=True)) == {admin.pk}


def confirm_fields(client, **filter_and_decision):
    data = {"all_matching": "1", "decision": "approve", "action": "", "q": "", "reason": ""}
    html = client.post(QUEUE, {**data, **filter_and_decision}).content.decode()
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', html)), html


def test_the_filter_is_carried_not_ids(acme, operator, admin):
    isolate = pending_requests(acme, operator, 52)
    scans = pending_requests(acme, operator, 3, key="scan_for_malware", prefix="pc")
    client = client_for(admin)
    fields, html = confirm_fields(client, action="isolate_endpoint")
    assert "Approve 52 requests?" in html and "requests" not in fields

    client.post(QUEUE, fields)
    assert {r.status for r in ActionRequest.objects.filter(pk__in=[r.pk for r in isolate])} == {
        RequestStatus.APPROVED
    }
    assert {r.status for r in ActionRequest.objects.filter(pk__in=[r.pk for r in scans])} == {
        RequestStatus.PENDING
    }


def test_the_search_is_carried(acme, operator, admin):
    pending_requests(acme, operator, 3, prefix="db")
    pending_requests(acme, operator, 4, prefix="ws")
    client = client_for(admin)
    fields, html = confirm_fields(client, q="db-")
    assert "Approve 3 requests?" in html
    client.post(QUEUE, fields)
    approved = ActionRequest.objects.filter(status=RequestStatus.APPROVED)
    assert sorted(r.targets.get().value for r in approved) == [
        "db-0.acme.test",
        "db-1.acme.test",
        "db-2.acme.test",
    ]


def test_one_decided_meanwhile_is_reported_not_counted(acme, operator, admin):
    chosen = pending_requests(acme, operator, 10)
    other = UserFactory(username="acme-admin-2")
    MembershipFactory(user=other, organization=acme, role=Role.ADMIN)
    client = client_for(admin)
    fields, _ = confirm_fields(client)
    for action_request in chosen[:3]:
        services.reject_request(action_request.pk, actor=other, reason="Not ours")

    done = client.post(QUEUE, fields, follow=True)
    shown = messages_of(done)
    assert "Approved 7 requests." in shown
    assert (
        "3 of the requests you confirmed were decided, cancelled or expired meanwhile; "
        "not counted." in shown
    )
    assert approved_events().count() == 7
    assert ActionRequest.objects.filter(status=RequestStatus.REJECTED).count() == 3


def test_a_request_submitted_after_the_confirmation_page_is_not_decided(acme, operator, admin):
    pending_requests(acme, operator, 5)
    client = client_for(admin)
    fields, _ = confirm_fields(client)
    late = submit(acme, operator, endpoints=["late.acme.test"])

    client.post(QUEUE, fields)
    late.refresh_from_db()
    assert late.status == RequestStatus.PENDING
    assert approved_events().count() == 5


def test_rejecting_all_asks_for_the_reason_on_the_confirmation_page(acme, operator, admin):
    pending_requests(acme, operator, 4)
    client = client_for(admin)
    fields, html = confirm_fields(client, decision="reject", reason="Typed first")
    assert "Reject 4 requests?" in html and ">Typed first</textarea>" in html

    refused = client.post(QUEUE, {**fields, "reason": "  "}, follow=True)
    assert services.REASON_REQUIRED in messages_of(refused)
    assert not ActionRequest.objects.exclude(status=RequestStatus.PENDING).exists()

    client.post(QUEUE, {**fields, "reason": "Maintenance window"})
    rejected = ActionRequest.objects.filter(status=RequestStatus.REJECTED)
    assert rejected.count() == 4
    assert set(rejected.values_list("decision_reason", flat=True)) == {"Maintenance window"}
    assert AuditEvent.objects.filter(verb="request.rejected").count() == 4


@pytest.mark.parametrize(
    "bad",
    [
        {"action": "no_such_action"},
        {"action": "Isolate_Endpoint"},
        {"action": "isolate_endpoint\x00"},
        {"action": "isolate_endpoint\u200b"},
        {"action": "x" * 10_000},
        {"q": "ws\x00"},
        {"q": "x" * 10_000},
        {"decision": "approve-all"},
        {"decision": ""},
        {"confirm": "yes", "upto": "many"},
        {"confirm": "yes", "upto": ""},
        {"confirm": "yes", "upto": "9" * 100},
        {"confirm": "yes", "upto": "1", "expected": "9" * 100},
    ],
)
def test_a_bad_filter_or_decision_decides_nothing(acme, operator, admin, bad):
    pending_requests(acme, operator, 3)
    data = {"all_matching": "1", "decision": "approve", "action": "", "q": "", **bad}
    response = client_for(admin).post(QUEUE, data, follow=True)
    assert response.status_code == 200
    assert messages_of(response), bad
    assert "Approve 3 requests?" not in response.content.decode()
    assert not ActionRequest.objects.exclude(status=RequestStatus.PENDING).exists()
    assert not approved_events().exists()


def test_more_than_the_limit_is_refused_asking_to_narrow_the_filter(
    acme, operator, admin, monkeypatch
):
    monkeypatch.setattr(views, "MAX_ALL_MATCHING", 5)
    pending_requests(acme, operator, 6)
    response = client_for(admin).post(
        QUEUE, {"all_matching": "1", "decision": "approve"}, follow=True
    )
    assert (
        "More than 5 requests match the filter: expected at most 5 at once. Narrow the filter "
        "by action or search." in messages_of(response)
    )
    assert not approved_events().exists()


@pytest.mark.parametrize("who,status", [("operator", 403), ("auditor", 403), ("outsider", 404)])
def test_only_admins_decide_all(cast, acme, who, status):
    pending_requests(acme, cast["operator"], 2)
    for confirm in ({}, {"confirm": "yes", "upto": "999999", "expected": "2"}):
        response = client_for(cast[who]).post(
            QUEUE, {"all_matching": "1", "decision": "approve", **confirm}
        )
        assert response.status_code == status
    assert not approved_events().exists()


def test_an_admins_own_request_is_left_out(acme, operator, admin):
    colleague = UserFactory(username="operator-2")
    MembershipFactory(user=colleague, organization=acme, role=Role.OPERATOR)
    pending_requests(acme, colleague, 2)
    own = submit(acme, operator, endpoints=["own.acme.test"])
    # The operator became an admin: their own request is not theirs to decide.
    from responseportal.models import Membership

    Membership.objects.filter(user=operator, organization=acme).update(role=Role.ADMIN)
    client = client_for(operator)
    fields, html = confirm_fields(client)
    assert "Approve 2 requests?" in html
    client.post(QUEUE, fields)
    own.refresh_from_db()
    assert own.status == RequestStatus.PENDING
    assert approved_events().count() == 2


def test_the_queue_reverse_still_names_the_page():
    assert reverse("queue", args=["acme"]) == QUEUE

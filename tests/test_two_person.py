"""Two-person approval: the number of distinct admins an action needs, fixed on each request at
submission; each approval counted once, the requester never; the last one approves (issue 14)."""

import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from api.tokens import create_token
from approvals import email_links, services
from approvals.models import ActionRequest, Approval, ApprovalSettings, RequestStatus
from audit.context import AuditContext
from audit.models import AuditEvent, Source
from responseportal.models import Membership, Role

from .approvals_helpers import submit
from .conftest import client_for
from .factories import MembershipFactory, UserFactory
from .test_approval_settings import approval_actions, form_data

pytestmark = pytest.mark.django_db

WEB = AuditContext(source=Source.WEB, ip_address="192.0.2.10", user_agent="pytest-browser")
QUEUE = "/orgs/acme/queue/"
SETTINGS = "/orgs/acme/settings/approval/"


def needing(organization, **counts) -> ApprovalSettings:
    settings = ApprovalSettings.for_organization(organization)
    settings.approvals_needed = counts
    settings.save()
    return settings


def verbs(action_request) -> list[str]:
    return list(action_request.events.order_by("id").values_list("verb", flat=True))


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


@pytest.fixture
def third_admin(acme):
    user = UserFactory(username="acme-admin-3")
    MembershipFactory(user=user, organization=acme, role=Role.ADMIN)
    return user


@pytest.fixture
def two_person(acme, operator):
    needing(acme, isolate_endpoint=2)
    return submit(acme, operator)


# The service


def test_the_number_is_fixed_on_the_request_when_it_is_submitted(acme, operator):
    needing(acme, isolate_endpoint=3)
    isolate = submit(acme, operator)
    scan = submit(acme, operator, key="scan_for_malware")
    assert (isolate.approvals_needed, scan.approvals_needed) == (3, 1)
    needing(acme)  # back to one admin for everything: the waiting request keeps its three
    isolate.refresh_from_db()
    assert isolate.approvals_needed == 3


def test_a_request_that_runs_at_once_needs_no_approval(acme, operator):
    needing(acme, isolate_endpoint=2)
    assert submit(acme, operator, key="link_workbench_alert", endpoints=()).approvals_needed == 0


def test_the_first_approval_is_recorded_and_the_request_keeps_waiting(
    two_person, admin, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        services.approve_request(two_person.pk, actor=admin, comment="Looks right", context=WEB)
    two_person.refresh_from_db()
    assert (two_person.status, two_person.decided_by, two_person.decided_at) == (
        RequestStatus.PENDING,
        None,
        None,
    )
    approval = Approval.objects.get(request=two_person)
    assert (approval.admin, approval.comment, approval.source) == (admin, "Looks right", "web")
    assert verbs(two_person) == ["request.submitted", "request.approval_added"]
    added = two_person.events.get(verb="request.approval_added")
    assert (added.actor, added.role, added.source) == (admin, "admin", "web")
    assert added.data == {"approvals": {"given": 1, "needed": 2}, "comment": "Looks right"}
    assert not two_person.calls.exists()
    # Nothing is announced or queued: no notification, no execution.
    assert not two_person.notifications.filter(kind="approved").exists()
    assert callbacks == []


def test_the_last_approval_approves_and_the_request_runs_once(
    two_person, admin, second_admin, django_capture_on_commit_callbacks
):
    services.approve_request(two_person.pk, actor=admin)
    with django_capture_on_commit_callbacks(execute=True):
        services.approve_request(two_person.pk, actor=second_admin, comment="Second pair of eyes")
    two_person.refresh_from_db()
    assert two_person.status == RequestStatus.SUCCESSFUL
    assert (two_person.decided_by, two_person.decision_reason) == (
        second_admin,
        "Second pair of eyes",
    )
    assert verbs(two_person)[:3] == [
        "request.submitted",
        "request.approval_added",
        "request.approved",
    ]
    approved = two_person.events.get(verb="request.approved")
    assert approved.actor == second_admin
    assert two_person.calls.count() == two_person.targets.count() == 1
    assert sorted(two_person.approvals.values_list("admin__username", flat=True)) == [
        "acme-admin",
        "acme-admin-2",
    ]


def test_one_admin_counts_once(two_person, admin):
    services.approve_request(two_person.pk, actor=admin)
    with pytest.raises(services.TransitionRefused) as refused:
        services.approve_request(two_person.pk, actor=admin, comment="again")
    assert "You already approved this request at" in refused.value.message
    assert "each admin counts once" in refused.value.message
    assert "1 of the 2 approvals" in refused.value.message
    two_person.refresh_from_db()
    assert two_person.status == RequestStatus.PENDING
    assert two_person.approvals.count() == 1
    assert verbs(two_person) == ["request.submitted", "request.approval_added"]


def test_three_admins_are_needed_when_the_action_says_three(
    acme, operator, admin, second_admin, third_admin
):
    needing(acme, isolate_endpoint=3)
    action_request = submit(acme, operator)
    services.approve_request(action_request.pk, actor=admin)
    services.approve_request(action_request.pk, actor=second_admin)
    action_request.refresh_from_db()
    assert action_request.status == RequestStatus.PENDING
    approval_events = action_request.events.filter(verb="request.approval_added").order_by("id")
    given = [e.data["approvals"] for e in approval_events]
    assert given == [{"given": 1, "needed": 3}, {"given": 2, "needed": 3}]
    services.approve_request(action_request.pk, actor=third_admin)
    action_request.refresh_from_db()
    assert action_request.status == RequestStatus.APPROVED
    assert action_request.decided_by == third_admin


def test_the_requester_never_counts_whatever_role_they_hold_now(two_person, operator, acme, admin):
    Membership.objects.filter(user=operator, organization=acme).update(role=Role.ADMIN)
    with pytest.raises(services.SeparationOfDuties):
        services.approve_request(two_person.pk, actor=operator)
    services.approve_request(two_person.pk, actor=admin)
    two_person.refresh_from_db()
    assert two_person.status == RequestStatus.PENDING
    assert list(two_person.approvals.values_list("admin", flat=True)) == [admin.pk]


@pytest.mark.parametrize("rejecter", ["admin", "second_admin"])
def test_a_single_rejection_rejects_even_after_an_approval(
    request, two_person, admin, second_admin, rejecter
):
    services.approve_request(two_person.pk, actor=admin)
    services.reject_request(two_person.pk, actor=request.getfixturevalue(rejecter), reason="No")
    two_person.refresh_from_db()
    assert two_person.status == RequestStatus.REJECTED
    with pytest.raises(services.TransitionRefused, match="already rejected"):
        services.approve_request(two_person.pk, actor=second_admin)
    assert not two_person.calls.exists()


def test_an_expired_request_with_one_approval_is_never_approved(two_person, admin, second_admin):
    services.approve_request(two_person.pk, actor=admin)
    ActionRequest.objects.filter(pk=two_person.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    with pytest.raises(services.TransitionRefused, match="expired"):
        services.approve_request(two_person.pk, actor=second_admin)
    two_person.refresh_from_db()
    assert two_person.status == RequestStatus.EXPIRED
    assert two_person.approvals.count() == 1


@pytest.mark.parametrize("who", ["operator", "auditor", "outsider"])
def test_only_admins_of_the_organization_add_approvals(cast, two_person, who):
    with pytest.raises(services.PermissionDenied):
        services.approve_request(two_person.pk, actor=cast[who])
    assert not Approval.objects.exists()


def test_one_admin_requests_are_approved_by_the_first_approval(acme, operator, admin):
    action_request = submit(acme, operator)
    services.approve_request(action_request.pk, actor=admin)
    action_request.refresh_from_db()
    assert action_request.status == RequestStatus.APPROVED
    assert verbs(action_request) == ["request.submitted", "request.approved"]


# The pages


def test_the_request_page_shows_who_approved_when(two_person, admin, second_admin, auditor):
    url = reverse("request_detail", args=["acme", two_person.uuid])
    before = client_for(auditor).get(url).content.decode()
    assert "0 of 2 approvals" in before
    services.approve_request(two_person.pk, actor=admin, comment="Checked the host")
    html = client_for(second_admin).get(url).content.decode()
    assert "1 of 2 approvals" in html
    assert "1 more needed from distinct admins" in html
    assert re.search(r"Approved by acme-admin at <time[^>]*>[^<]+</time>: ", html)
    assert "Checked the host" in html
    assert f'action="{reverse("request_approve", args=["acme", two_person.uuid])}"' in html


def test_an_admin_who_approved_sees_no_approve_button_but_can_still_reject(two_person, admin):
    services.approve_request(two_person.pk, actor=admin)
    html = client_for(admin).get(reverse("request_detail", args=["acme", two_person.uuid]))
    html = html.content.decode()
    assert "You approved this request; it waits for 1 more approval from other admins." in html
    assert reverse("request_approve", args=["acme", two_person.uuid]) not in html
    assert reverse("request_reject", args=["acme", two_person.uuid]) in html


def test_approving_twice_from_the_page_counts_once_and_says_why(two_person, admin, csrf_client):
    client = client_for(admin)
    url = reverse("request_approve", args=["acme", two_person.uuid])
    first = client.post(url, {"comment": ""}, follow=True)
    assert messages_of(first) == [
        "Your approval is recorded: Isolate Endpoint has 1 of the 2 approvals it needs and "
        "waits for another admin."
    ]
    second = client.post(url, {"comment": ""}, follow=True)  # a stale page, or a double click
    (message,) = messages_of(second)
    assert message.startswith("You already approved this request at")
    assert two_person.approvals.count() == 1
    two_person.refresh_from_db()
    assert two_person.status == RequestStatus.PENDING


def test_the_second_admin_approves_from_the_page(two_person, admin, second_admin):
    services.approve_request(two_person.pk, actor=admin)
    url = reverse("request_approve", args=["acme", two_person.uuid])
    response = client_for(second_admin).post(url, {"comment": "ok"}, follow=True)
    assert messages_of(response) == ["Approved: Isolate Endpoint."]
    two_person.refresh_from_db()
    assert two_person.status == RequestStatus.APPROVED


def test_the_queue_shows_what_each_request_still_needs(acme, operator, admin, second_admin):
    needing(acme, isolate_endpoint=2)
    isolate = submit(acme, operator)
    scan = submit(acme, operator, key="scan_for_malware")
    services.approve_request(isolate.pk, actor=second_admin)
    html = client_for(admin).get(QUEUE).content.decode()
    rows = dict(re.findall(r'value="([0-9a-f-]{36})".*?approvals-to-go">([^<]+)</div>', html, re.S))
    assert rows == {
        str(isolate.uuid): "1 of 2 approvals; needs 1 more approval",
        str(scan.uuid): "needs 1 more approval",
    }


def test_the_queue_does_not_offer_a_request_to_the_admin_who_approved_it(
    acme, operator, admin, second_admin
):
    needing(acme, isolate_endpoint=2)
    isolate = submit(acme, operator)
    scan = submit(acme, operator, key="scan_for_malware")
    services.approve_request(isolate.pk, actor=admin)
    mine = client_for(admin).get(QUEUE)
    shown = [r.uuid for r in mine.context["page"].object_list]
    assert shown == [scan.uuid]
    theirs = client_for(second_admin).get(QUEUE)
    assert [r.uuid for r in theirs.context["page"].object_list] == [isolate.uuid, scan.uuid]
    # Listing every request, the admin sees it but cannot select it.
    everything = client_for(admin).get(QUEUE, {"status": "all"})
    selectable = {r.uuid: r.selectable for r in everything.context["page"].object_list}
    assert selectable == {isolate.uuid: False, scan.uuid: True}


def test_the_queue_counts_approvals_in_a_bounded_number_of_queries(
    acme, operator, admin, second_admin, django_assert_max_num_queries
):
    needing(acme, isolate_endpoint=2)
    client = client_for(admin)
    first = submit(acme, operator)
    services.approve_request(first.pk, actor=second_admin)
    with django_assert_max_num_queries(7) as one:
        client.get(QUEUE)
    for n in range(49):
        services.approve_request(
            submit(acme, operator, endpoints=[f"ws-{n}"]).pk, actor=second_admin
        )
    with django_assert_max_num_queries(len(one.captured_queries)):
        response = client.get(QUEUE)
    assert len(response.context["page"].object_list) == 50


def test_bulk_approve_counts_once_per_admin(acme, operator, admin, second_admin):
    needing(acme, isolate_endpoint=2)
    chosen = [submit(acme, operator, endpoints=[f"ws-{n}.acme.test"]) for n in range(3)]
    uuids = [str(r.uuid) for r in chosen]
    client = client_for(admin)
    first = client.post(QUEUE, {"decision": "approve", "requests": uuids}, follow=True)
    assert messages_of(first) == [
        "Your approval was recorded on 3 requests that need another admin's approval too."
    ]
    # The same selection sent again (a stale queue page) adds nothing.
    again = client.post(QUEUE, {"decision": "approve", "requests": uuids}, follow=True)
    refusals = messages_of(again)
    assert len(refusals) == 3
    assert all("You already approved this request at" in m for m in refusals)
    assert Approval.objects.count() == 3
    done = client_for(second_admin).post(
        QUEUE, {"decision": "approve", "requests": uuids}, follow=True
    )
    assert messages_of(done) == ["Approved 3 requests."]
    assert set(ActionRequest.objects.values_list("status", flat=True)) == {RequestStatus.APPROVED}
    assert AuditEvent.objects.filter(verb="request.approved").count() == 3


def _confirm_all(client, decision="approve"):
    data = {"all_matching": "1", "decision": decision, "action": "", "q": "", "reason": ""}
    html = client.post(QUEUE, data).content.decode()
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', html))
    return client.post(QUEUE, fields, follow=True)


def test_select_all_matching_follows_the_rule(acme, operator, admin, second_admin):
    needing(acme, isolate_endpoint=2)
    for n in range(52):  # more than a page, so "select all matching" is offered
        submit(acme, operator, endpoints=[f"ws-{n}.acme.test"])
    first = _confirm_all(client_for(admin))
    assert messages_of(first) == [
        "Your approval was recorded on 52 requests that need another admin's approval too."
    ]
    assert ActionRequest.objects.filter(status=RequestStatus.PENDING).count() == 52
    # The same admin's select-all finds nothing left for them.
    data = {"all_matching": "1", "decision": "approve", "action": "", "q": "", "reason": ""}
    again = client_for(admin).post(QUEUE, data, follow=True)
    assert messages_of(again) == ["No pending request you may decide matches the filter now."]
    assert Approval.objects.count() == 52
    done = _confirm_all(client_for(second_admin))
    assert messages_of(done) == ["Approved 52 requests."]
    assert ActionRequest.objects.filter(status=RequestStatus.APPROVED).count() == 52


# E-mail links


@pytest.fixture
def _portal_url(settings):
    settings.PORTAL_URL = "https://portal.example.net"


def email_path(action_request, user, decision="approve") -> str:
    token = email_links.token(
        action_request, user, decision, request_digest=email_links.digest(action_request)
    )
    return reverse("email_decision", args=["acme", action_request.uuid, token])


def test_email_links_follow_the_rule(_portal_url, two_person, admin, second_admin):
    first = client_for(admin).post(email_path(two_person, admin), {"comment": ""}, follow=True)
    assert first.status_code == 200
    assert messages_of(first) == [
        "Your approval is recorded: Isolate Endpoint has 1 of the 2 approvals it needs and "
        "waits for another admin."
    ]
    approval = Approval.objects.get(request=two_person)
    assert (approval.admin, approval.source) == (admin, "email")
    assert two_person.events.get(verb="request.approval_added").source == "email"
    # The same admin's approval from the request page is refused: they already count.
    page = client_for(admin).post(
        reverse("request_approve", args=["acme", two_person.uuid]), {"comment": ""}, follow=True
    )
    assert messages_of(page)[0].startswith("You already approved this request at")
    done = client_for(second_admin).post(
        email_path(two_person, second_admin), {"comment": ""}, follow=True
    )
    assert messages_of(done) == ["Approved: Isolate Endpoint."]
    two_person.refresh_from_db()
    assert (two_person.status, two_person.decided_by) == (RequestStatus.APPROVED, second_admin)


def test_an_email_link_of_an_admin_who_approved_on_the_page_says_so(_portal_url, two_person, admin):
    services.approve_request(two_person.pk, actor=admin)
    path = email_path(two_person, admin)
    shown = client_for(admin).get(path)
    assert "You already approved this request at" in shown.content.decode()
    posted = client_for(admin).post(path, {"comment": ""})
    assert posted.status_code == 409
    assert two_person.approvals.count() == 1


def test_the_pending_email_goes_to_every_admin_with_their_own_links(
    _portal_url, acme, operator, admin, second_admin, django_capture_on_commit_callbacks
):
    needing(acme, isolate_endpoint=2)
    with django_capture_on_commit_callbacks(execute=True):
        action_request = submit(acme, operator)
    bodies = {m.to[0]: m.body for m in mail.outbox}
    for user in (admin, second_admin):
        (approve,) = re.findall(r"^Approve: +(\S+)$", bodies[user.email], re.M)
        assert urlsplit(approve).path == email_path(action_request, user)
        assert "It runs once 2 different admins approve it (0 so far)" in bodies[user.email]
    html = mail.outbox[0].alternatives[0][0]
    assert "<strong>2 different admins</strong> approve it (0 so far)" in html


def test_a_one_admin_request_says_nothing_of_counts_in_its_email(
    _portal_url, acme, operator, admin, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        submit(acme, operator)
    (message,) = mail.outbox
    assert "different admins" not in message.body


# The settings form


def test_the_settings_page_has_one_labelled_list_per_action(admin):
    html = client_for(admin).get(SETTINGS).content.decode()
    keys = approval_actions()
    assert len(keys) == 16
    for key in keys:
        assert f'name="approvals_needed__{key}"' in html
    assert '<label class="col-form-label col-form-label-sm py-0" for="id_approvals_needed__' in (
        html
    )
    assert "Approvals needed for Isolate Endpoint" in html
    assert '<option value="2">2 distinct admins</option>' in html
    assert 'name="approvals_needed__link_workbench_alert"' not in html


def test_saving_two_for_an_action_is_stored_and_audited(acme, admin):
    response = client_for(admin).post(
        SETTINGS, form_data(acme, approvals_needed__isolate_endpoint="2"), follow=True
    )
    assert messages_of(response) == ["Approval settings saved."]
    saved = ApprovalSettings.objects.get(organization=acme)
    assert saved.approvals_needed == {"isolate_endpoint": 2}
    assert saved.approvals_needed_for("isolate_endpoint") == 2
    assert saved.approvals_needed_for("scan_for_malware") == 1
    event = AuditEvent.objects.get(verb="settings.changed")
    assert event.data == {"approvals_needed": {"before": {}, "after": {"isolate_endpoint": 2}}}
    page = client_for(admin).get(SETTINGS)
    assert page.context["form"]["approvals_needed__isolate_endpoint"].value() == "2"


def test_back_to_one_removes_the_rule(acme, admin):
    needing(acme, isolate_endpoint=3, scan_for_malware=2)
    client_for(admin).post(SETTINGS, form_data(acme, approvals_needed__isolate_endpoint="1"))
    assert ApprovalSettings.objects.get(organization=acme).approvals_needed == {
        "scan_for_malware": 2
    }


def test_a_form_without_the_fields_keeps_the_numbers(acme, admin):
    needing(acme, isolate_endpoint=3)
    client_for(admin).post(SETTINGS, form_data(acme, pending_lifetime_hours=48))
    saved = ApprovalSettings.objects.get(organization=acme)
    assert (saved.pending_lifetime_hours, saved.approvals_needed) == (48, {"isolate_endpoint": 3})


@pytest.mark.parametrize(
    "value",
    [
        "0",
        "4",
        "2 ",
        " 2",
        "02",
        "2.0",
        "two",
        "+2",
        "２",
        "٢",
        "2\u200b",
        "2\x00",
        "-1",
        "9" * 5000,
    ],
)
def test_other_values_are_refused_and_change_nothing(acme, admin, value):
    needing(acme, isolate_endpoint=2)
    version = ApprovalSettings.objects.get(organization=acme).version
    response = client_for(admin).post(
        SETTINGS, form_data(acme, approvals_needed__isolate_endpoint=value)
    )
    assert response.status_code == 200
    (error,) = response.context["form"].errors["approvals_needed__isolate_endpoint"]
    assert error.endswith("is not a number of approvals for Isolate Endpoint: expected 1, 2 or 3.")
    assert len(error) < 200
    assert "\x00" not in error
    saved = ApprovalSettings.objects.get(organization=acme)
    assert (saved.version, saved.approvals_needed) == (version, {"isolate_endpoint": 2})
    assert not AuditEvent.objects.filter(verb="settings.changed").exists()
    assert "Approvals needed for Isolate Endpoint" in response.content.decode()


def test_an_empty_choice_is_refused(acme, admin):
    response = client_for(admin).post(
        SETTINGS, form_data(acme, approvals_needed__isolate_endpoint="")
    )
    assert response.context["form"].errors["approvals_needed__isolate_endpoint"] == [
        "Choose 1, 2 or 3 approvals for Isolate Endpoint."
    ]
    assert not ApprovalSettings.objects.filter(organization=acme).exists()


@pytest.mark.parametrize("who", ["operator", "auditor"])
def test_only_admins_change_the_numbers(cast, acme, who):
    client = client_for(cast[who])
    page = client.get(SETTINGS).content.decode()
    assert re.search(r'<select name="approvals_needed__isolate_endpoint"[^>]*disabled', page)
    response = client.post(SETTINGS, form_data(acme, approvals_needed__isolate_endpoint="2"))
    assert response.status_code == 403
    assert ApprovalSettings.for_organization(acme).approvals_needed == {}


def test_an_outsider_gets_404(acme, outsider):
    response = client_for(outsider).post(
        SETTINGS, form_data(acme, approvals_needed__isolate_endpoint="2")
    )
    assert response.status_code == 404
    assert ApprovalSettings.for_organization(acme).approvals_needed == {}


# The API: the same service, so the same rule


def api_client(user, organization) -> Client:
    secret = create_token(user, organization, name="approver")[1]
    return Client(headers={"authorization": f"Bearer {secret}"})


def test_the_api_counts_each_admin_once_and_approves_on_the_last(
    two_person, admin, second_admin, acme
):
    path = f"/api/v1/orgs/acme/requests/{two_person.uuid}/approve/"
    first = api_client(admin, acme)
    counted = first.post(path, {"comment": "ok"}, content_type="application/json")
    assert counted.status_code == 200
    assert counted.json()["status"] == "pending"
    assert [e["verb"] for e in counted.json()["timeline"]] == [
        "request.submitted",
        "request.approval_added",
    ]
    again = first.post(path, {}, content_type="application/json")
    assert again.status_code == 409
    assert "You already approved this request at" in again.json()["detail"]
    done = api_client(second_admin, acme).post(path, {}, content_type="application/json")
    assert done.status_code == 200
    assert done.json()["status"] != "pending"
    assert Approval.objects.get(request=two_person, admin=admin).source == "api"

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from approvals import services
from approvals.models import ActionRequest, RequestStatus
from audit.models import AuditEvent
from responseportal.models import Role

from .approvals_helpers import submit, turn_on_auto_approval
from .conftest import client_for
from .factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def pending(acme, operator):
    return submit(acme, operator, endpoints=["web-01.acme.test", "web-02.acme.test"])


def url(name, request=None, slug="acme"):
    return reverse(name, args=[slug, request.uuid] if request else [slug])


def messages_of(response):
    return [str(m) for m in response.context["messages"]] if response.context else []


GET_PAGES = {
    # page: expected status per member of the cast
    "request_list": {"operator": 200, "admin": 200, "auditor": 200, "outsider": 404},
    "request_detail": {"operator": 200, "admin": 200, "auditor": 200, "outsider": 404},
    "queue": {"operator": 403, "admin": 200, "auditor": 403, "outsider": 404},
    "request_chooser": {"operator": 200, "admin": 403, "auditor": 403, "outsider": 404},
}


@pytest.mark.parametrize("page", GET_PAGES)
@pytest.mark.parametrize("who", ["operator", "admin", "auditor", "outsider"])
def test_pages_answer_each_role(cast, pending, page, who):
    target = url(page, pending if page in ABOUT_ONE_REQUEST else None)
    assert client_for(cast[who]).get(target).status_code == GET_PAGES[page][who]


ABOUT_ONE_REQUEST = {"request_detail", "request_approve", "request_reject", "request_cancel"}


@pytest.mark.parametrize("page", [*GET_PAGES, "request_approve", "request_reject"])
def test_anonymous_is_sent_to_sign_in(client, pending, page):
    target = url(page, pending if page in ABOUT_ONE_REQUEST else None)
    response = (
        client.post(target)
        if page in ABOUT_ONE_REQUEST - {"request_detail"}
        else client.get(target)
    )
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    pending.refresh_from_db()
    assert pending.status == RequestStatus.PENDING


@pytest.mark.parametrize(
    "name,expected",
    [
        ("request_approve", {"operator": 403, "auditor": 403, "outsider": 404}),
        ("request_reject", {"operator": 403, "auditor": 403, "outsider": 404}),
        ("request_cancel", {"admin": 403, "auditor": 403, "outsider": 404}),
    ],
)
def test_decisions_are_refused_to_the_wrong_people(cast, pending, name, expected):
    for who, status in expected.items():
        response = client_for(cast[who]).post(url(name, pending), {"reason": "x"})
        assert response.status_code == status, who
    pending.refresh_from_db()
    assert pending.status == RequestStatus.PENDING


def test_another_organizations_request_is_a_404(outsider, globex, pending):
    # The request exists, but under acme: through globex's URL it is not found either.
    response = client_for(outsider).get(url("request_detail", pending, slug="globex"))
    assert response.status_code == 404


def test_decisions_need_post(admin, pending):
    assert client_for(admin).get(url("request_approve", pending)).status_code == 405


def test_detail_shows_parameters_targets_and_timeline(admin, pending):
    response = client_for(admin).get(url("request_detail", pending))
    html = response.content.decode()
    assert "Isolate Endpoint" in html
    assert "Pending approval" in html
    assert "web-02.acme.test" in html and "Beaconing" in html
    assert "request.submitted" in html
    assert "Approve" in html and "Reason for rejecting" in html


def test_requester_sees_cancel_not_decide(operator, pending):
    html = client_for(operator).get(url("request_detail", pending)).content.decode()
    assert "Cancel this request" in html
    assert "Reason for rejecting" not in html


def test_admin_approves_from_the_detail_page(admin, pending):
    response = client_for(admin).post(url("request_approve", pending), follow=True)
    assert response.redirect_chain[-1][0] == url("request_detail", pending)
    assert "Approved: Isolate Endpoint." in messages_of(response)
    pending.refresh_from_db()
    assert pending.status == RequestStatus.APPROVED
    assert "request.approved" in response.content.decode()


def test_a_stale_page_is_told_what_happened(admin, pending):
    second = UserFactory(username="acme-admin-2")
    MembershipFactory(user=second, organization=pending.organization, role=Role.ADMIN)
    client_for(admin).post(url("request_approve", pending))
    response = client_for(second).post(
        url("request_reject", pending), {"reason": "no"}, follow=True
    )
    assert any("already approved by acme-admin" in m for m in messages_of(response))
    pending.refresh_from_db()
    assert pending.status == RequestStatus.APPROVED


def test_rejecting_without_a_reason_changes_nothing(admin, pending):
    response = client_for(admin).post(url("request_reject", pending), {"reason": " "}, follow=True)
    assert any("Give a reason" in m for m in messages_of(response))
    pending.refresh_from_db()
    assert pending.status == RequestStatus.PENDING


def test_requester_cancels(operator, pending):
    client_for(operator).post(url("request_cancel", pending))
    pending.refresh_from_db()
    assert pending.status == RequestStatus.CANCELLED


def test_next_never_leaves_the_site(admin, pending):
    response = client_for(admin).post(
        url("request_approve", pending), {"next": "https://evil.example.com/"}
    )
    assert response["Location"] == url("request_detail", pending)


def test_an_expired_request_shows_expired_and_offers_no_decision(admin, pending):
    ActionRequest.objects.filter(pk=pending.pk).update(expires_at=timezone.now() - timedelta(1))
    html = client_for(admin).get(url("request_detail", pending)).content.decode()
    assert "Expired" in html
    assert "Reason for rejecting" not in html


class TestQueue:
    def test_it_lists_pending_requests_oldest_first(self, acme, operator, admin):
        first = submit(acme, operator, endpoints=["old.acme.test"])
        second = submit(acme, operator, endpoints=["new.acme.test"])
        ActionRequest.objects.filter(pk=first.pk).update(
            submitted_at=timezone.now() - timedelta(hours=2)
        )
        services.approve_request(
            submit(acme, operator, endpoints=["done.acme.test"]).pk, actor=admin
        )
        page = client_for(admin).get(url("queue")).context["page"]
        assert [r.pk for r in page.object_list] == [first.pk, second.pk]

    def test_it_shows_decided_or_all_requests_on_demand(self, acme, operator, admin):
        waiting = submit(acme, operator, endpoints=["waiting.acme.test"])
        decided = submit(acme, operator, endpoints=["decided.acme.test"])
        services.reject_request(decided.pk, actor=admin, reason="no")
        turn_on_auto_approval(acme)
        submit(acme, operator, endpoints=["auto.acme.test"])  # never in the queue
        client = client_for(admin)

        def shown(status):
            page = client.get(url("queue"), {"status": status} if status else {}).context["page"]
            return {r.pk for r in page.object_list}

        assert shown(None) == shown("pending") == {waiting.pk}
        assert shown("decided") == {decided.pk}
        assert shown("all") == {waiting.pk, decided.pk}

    def test_it_filters_by_action_and_keyword(self, acme, operator, admin):
        submit(acme, operator, endpoints=["alpha.acme.test"])
        submit(acme, operator, key="scan_for_malware", endpoints=["beta.acme.test"])
        client = client_for(admin)
        by_action = client.get(url("queue"), {"action": "scan_for_malware"}).context["page"]
        assert [r.action.key for r in by_action.object_list] == ["scan_for_malware"]
        by_text = client.get(url("queue"), {"q": "ALPHA"}).context["page"]
        assert [r.targets.get().value for r in by_text.object_list] == ["alpha.acme.test"]

    def test_admin_approves_several_at_once(self, acme, operator, admin):
        requests = [submit(acme, operator, endpoints=[f"h{n}.acme.test"]) for n in range(3)]
        response = client_for(admin).post(
            url("queue"),
            {"decision": "approve", "requests": [str(r.uuid) for r in requests]},
            follow=True,
        )
        assert "Approved 3 requests." in messages_of(response)
        assert set(ActionRequest.objects.values_list("status", flat=True)) == {"approved"}
        assert AuditEvent.objects.filter(verb="request.approved").count() == 3

    def test_admin_rejects_several_with_one_reason(self, acme, operator, admin):
        requests = [submit(acme, operator, endpoints=[f"h{n}.acme.test"]) for n in range(3)]
        client_for(admin).post(
            url("queue"),
            {
                "decision": "reject",
                "reason": "Wrong hosts",
                "requests": [str(r.uuid) for r in requests],
            },
        )
        assert set(ActionRequest.objects.values_list("decision_reason", flat=True)) == {
            "Wrong hosts"
        }

    def test_bulk_reject_needs_a_reason_and_changes_nothing(self, pending, admin):
        response = client_for(admin).post(
            url("queue"), {"decision": "reject", "requests": [str(pending.uuid)]}, follow=True
        )
        assert any("Give a reason" in m for m in messages_of(response))
        pending.refresh_from_db()
        assert pending.status == RequestStatus.PENDING

    def test_bulk_reports_each_request_that_could_not_be_decided(self, acme, operator, admin):
        fresh = submit(acme, operator, endpoints=["fresh.acme.test"])
        gone = submit(acme, operator, endpoints=["gone.acme.test"])
        services.cancel_request(gone.pk, actor=operator)
        response = client_for(admin).post(
            url("queue"),
            {"decision": "approve", "requests": [str(fresh.uuid), str(gone.uuid), "not-a-uuid"]},
            follow=True,
        )
        shown = messages_of(response)
        assert "Approved 1 request." in shown
        assert any("cancelled by operator" in m for m in shown)
        assert any("`not-a-uuid` is not a request ID" in m for m in shown)

    def test_bulk_cannot_reach_another_organizations_request(self, globex, admin):
        other_operator = UserFactory(username="globex-operator")
        MembershipFactory(user=other_operator, organization=globex, role=Role.OPERATOR)
        theirs = submit(globex, other_operator, endpoints=["x.globex.test"])
        response = client_for(admin).post(
            url("queue"), {"decision": "approve", "requests": [str(theirs.uuid)]}, follow=True
        )
        assert any("not found in this organization" in m for m in messages_of(response))
        theirs.refresh_from_db()
        assert theirs.status == RequestStatus.PENDING


def count_queries(client, target):
    with CaptureQueriesContext(connection) as captured:
        assert client.get(target).status_code == 200
    return len(captured)


@pytest.mark.parametrize("page", ["queue", "request_list"])
def test_list_pages_cost_the_same_with_1_and_50_rows(
    acme, operator, admin, page, django_assert_max_num_queries
):
    client = client_for(admin)
    submit(acme, operator, endpoints=["h0.acme.test"])
    with_one = count_queries(client, url(page))
    for n in range(1, 50):
        submit(acme, operator, endpoints=[f"h{n}.acme.test", f"x{n}.acme.test", "y", "z"])
    with django_assert_max_num_queries(with_one):
        response = client.get(url(page))
    assert len(response.context["page"].object_list) == 50
    assert with_one <= 7


def test_detail_costs_the_same_with_1_and_50_targets(
    acme, operator, admin, django_assert_max_num_queries
):
    client = client_for(admin)
    small = submit(acme, operator, endpoints=["h0.acme.test"])
    with_one = count_queries(client, url("request_detail", small))
    big = submit(acme, operator, endpoints=[f"h{n}.acme.test" for n in range(50)])
    services.approve_request(big.pk, actor=admin)
    with django_assert_max_num_queries(with_one):
        client.get(url("request_detail", big))
    assert with_one <= 9

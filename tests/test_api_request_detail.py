"""One request through the API tells what its page tells: the approvals so far (how many are
needed and given, by whom and when), a break-glass run's justification and review, and the
undo links both ways; each part costs a query only on the requests that can have it."""

from datetime import UTC

import pytest
from django.core.cache import caches
from django.db import connection
from django.test.utils import CaptureQueriesContext

from approvals import services, undo
from approvals.models import Approval, ApprovalSettings, RequestStatus
from audit.context import AuditContext
from audit.models import Source
from responseportal.models import Membership, Role

from .approvals_helpers import submit, turn_on_auto_approval
from .test_api_requests import api_for

REASON = "Ransomware spreading from this host to the file servers"
WEB = AuditContext(source=Source.WEB, ip_address="192.0.2.10", user_agent="pytest-browser")


@pytest.fixture(autouse=True)
def _fresh_rate_counts():
    caches["default"].clear()


def detail_url(action_request, slug="acme"):
    return f"/api/v1/orgs/{slug}/requests/{action_request.uuid}/"


def iso(moment):
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def needing(organization, **counts):
    settings = ApprovalSettings.for_organization(organization)
    settings.approvals_needed = counts
    settings.save()


# Approvals


def test_a_request_needing_two_shows_each_approval_as_it_comes(operator, admin, second_admin, acme):
    needing(acme, isolate_endpoint=2)
    pending = submit(acme, operator)
    approved = api_for(admin, acme).post(
        f"/api/v1/orgs/acme/requests/{pending.uuid}/approve/", {"comment": "Checked the host"}
    )
    assert approved.status_code == 200
    first = Approval.objects.get(request=pending, admin=admin)
    expected_first = {
        "admin": "acme-admin",
        "approved_at": iso(first.approved_at),
        "comment": "Checked the host",
        "source": "api",
    }
    assert approved.json()["approvals"] == {
        "needed": 2,
        "given": 1,
        "approved_by": [expected_first],
    }
    assert approved.json()["status"] == RequestStatus.PENDING

    services.approve_request(pending.pk, actor=second_admin, context=WEB)
    body = api_for(operator, acme).get(detail_url(pending)).json()
    second = Approval.objects.get(request=pending, admin=second_admin)
    assert body["approvals"] == {
        "needed": 2,
        "given": 2,
        "approved_by": [
            expected_first,
            {
                "admin": "acme-admin-2",
                "approved_at": iso(second.approved_at),
                "comment": "",
                "source": "web",
            },
        ],
    }
    assert body["status"] in {RequestStatus.APPROVED, RequestStatus.QUEUED}


def test_an_automatic_request_needed_no_approval_and_links_nothing(operator, acme):
    turn_on_auto_approval(acme)
    response = api_for(operator, acme).post(
        "/api/v1/orgs/acme/requests/",
        {
            "action": "isolate_endpoint",
            "parameters": {"endpoints": ["web-01"], "description": "C2"},
        },
    )
    assert response.status_code == 201
    body = response.json()
    assert body["approval_mode"] == "auto"
    assert body["approvals"] == {"needed": 0, "given": 0, "approved_by": []}
    assert body["break_glass"] is None
    assert body["undoes"] is None and body["undone_by"] == []


# Break-glass


def break_glass_allowed(organization):
    settings = ApprovalSettings.for_organization(organization)
    settings.break_glass_enabled = True
    settings.break_glass_actions = ["isolate_endpoint"]
    settings.save()


@pytest.mark.parametrize(("outcome", "comment"), [("accept", ""), ("flag", "No emergency")])
def test_a_break_glass_run_shows_its_justification_then_its_review(
    operator, admin, acme, outcome, comment
):
    break_glass_allowed(acme)
    run = submit(acme, operator, break_glass=True, justification=REASON)
    api = api_for(operator, acme)
    body = api.get(detail_url(run)).json()
    assert body["approval_mode"] == "break_glass"
    assert body["break_glass"] == {"justification": REASON, "awaits_review": True, "review": None}
    assert body["approvals"]["needed"] == 0

    services.review_request(run.pk, actor=admin, outcome=outcome, comment=comment, context=WEB)
    run.refresh_from_db()
    assert api.get(detail_url(run)).json()["break_glass"] == {
        "justification": REASON,
        "awaits_review": False,
        "review": {
            "outcome": outcome,
            "reviewed_by": "acme-admin",
            "reviewed_at": iso(run.reviewed_at),
            "comment": comment,
        },
    }


def test_a_request_that_was_not_a_break_glass_run_has_none(operator, acme):
    body = api_for(operator, acme).get(detail_url(submit(acme, operator))).json()
    assert body["break_glass"] is None


# Undo


@pytest.fixture
def isolation(acme, operator, django_capture_on_commit_callbacks):
    turn_on_auto_approval(acme, auto_approved_actions=["isolate_endpoint"])
    with django_capture_on_commit_callbacks(execute=True):
        done = submit(acme, operator, endpoints=("ws-1", "ws-2"))
    done.refresh_from_db()
    assert done.status == RequestStatus.SUCCESSFUL
    turn_on_auto_approval(acme, auto_approval_enabled=False)
    return done


def test_undo_links_go_both_ways(operator, acme, isolation):
    restore, created = undo.undo_request(isolation.pk, actor=operator, context=WEB)
    assert created
    api = api_for(operator, acme)

    original = api.get(detail_url(isolation)).json()
    assert original["undoes"] is None
    assert original["undone_by"] == [
        {
            "uuid": str(restore.uuid),
            "action": "restore_connection",
            "action_name": "Restore Connection",
            "status": "pending",
            "url": f"http://testserver/api/v1/orgs/acme/requests/{restore.uuid}/",
        }
    ]
    reversal = api.get(detail_url(restore)).json()
    assert reversal["undone_by"] == []
    assert reversal["undoes"] == {
        "uuid": str(isolation.uuid),
        "action": "isolate_endpoint",
        "action_name": "Isolate Endpoint",
        "status": "successful",
        "url": f"http://testserver/api/v1/orgs/acme/requests/{isolation.uuid}/",
    }
    # The link leads to the request, in this API, with the same token.
    assert api.get(reversal["undoes"]["url"]).json()["uuid"] == str(isolation.uuid)


def test_a_cancelled_undo_is_still_listed_with_its_status(operator, acme, isolation):
    restore, _ = undo.undo_request(isolation.pk, actor=operator, context=WEB)
    api = api_for(operator, acme)
    assert api.post(f"/api/v1/orgs/acme/requests/{restore.uuid}/cancel/").status_code == 200
    again, created = undo.undo_request(isolation.pk, actor=operator, context=WEB)
    assert created
    listed = api.get(detail_url(isolation)).json()["undone_by"]
    assert [(u["uuid"], u["status"]) for u in listed] == [
        (str(restore.uuid), "cancelled"),
        (str(again.uuid), "pending"),
    ]


# What it costs


def detail_statements(api, action_request) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert api.get(detail_url(action_request)).status_code == 200
    return len(queries)


def test_a_detail_costs_the_same_with_one_or_three_approvals(
    operator, admin, second_admin, acme, django_user_model
):
    third = django_user_model.objects.create(username="acme-admin-3")
    Membership.objects.create(user=third, organization=acme, role=Role.ADMIN)
    needing(acme, isolate_endpoint=3)
    one, three = submit(acme, operator), submit(acme, operator, endpoints=("web-02",))
    services.approve_request(one.pk, actor=admin, context=WEB)
    for someone in (admin, second_admin, third):
        services.approve_request(three.pk, actor=someone, context=WEB)
    api = api_for(operator, acme)
    api.get(detail_url(one))  # the token's first use is written, not the next ones
    assert detail_statements(api, one) == detail_statements(api, three)


def test_parts_a_request_cannot_have_cost_no_query(operator, acme):
    """An automatic request has no approvals, and an unfinished one no undo: neither is read.
    Token, request (with its membership), targets, timeline: at most five statements."""
    turn_on_auto_approval(acme)
    automatic = submit(acme, operator)
    api = api_for(operator, acme)
    api.get(detail_url(automatic))  # the token's first use is written, not the next ones
    with CaptureQueriesContext(connection) as queries:
        assert api.get(detail_url(automatic)).status_code == 200
    tables = " ".join(q["sql"] for q in queries)
    assert "approvals_approval" not in tables
    assert len(queries) <= 5

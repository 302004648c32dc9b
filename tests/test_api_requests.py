"""The REST API's requests: the same services and forms as the pages, so it refuses whatever
they refuse, with their messages, and every change is an audit event from the `api` source."""

import pytest
from django.core.cache import caches
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from api.tokens import create_token, revoke_token
from approvals import services
from approvals.models import ActionRequest, RequestStatus
from audit.models import AuditEvent
from responseportal.models import Membership, Role

from .approvals_helpers import submit, turn_on_auto_approval

AUTO_APPROVAL_REQUIRED = "Auto-approval must be enabled in order to use this response action."
ISOLATE = {
    "action": "isolate_endpoint",
    "parameters": {"endpoints": ["web-01.acme.test", "web-02.acme.test"], "description": "C2"},
}


@pytest.fixture(autouse=True)
def _fresh_rate_counts():
    caches["default"].clear()


class Api:
    """A client that sends one token's bearer header and JSON bodies."""

    def __init__(self, secret: str):
        self.client = Client()
        self.headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}

    def get(self, path, data=None, **extra):
        return self.client.get(path, data, **self.headers, **extra)

    def post(self, path, body=None, **extra):
        return self.client.post(
            path, body or {}, content_type="application/json", **self.headers, **extra
        )


def api_for(user, organization, name="playbook"):
    return Api(create_token(user, organization, name=name)[1])


def requests_url(slug="acme"):
    return f"/api/v1/orgs/{slug}/requests/"


# Submitting


def test_an_operator_submits_and_the_event_names_the_api_and_the_token(operator, acme):
    response = api_for(operator, acme, name="SOAR").post(requests_url(), ISOLATE)
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "pending" and body["action"] == "isolate_endpoint"
    assert [t["value"] for t in body["targets"]] == ["web-01.acme.test", "web-02.acme.test"]
    event = AuditEvent.objects.get(verb="request.submitted")
    assert event.source == "api"
    assert event.data["api_token"] == "SOAR"
    assert event.actor_username == "operator"
    assert [e["verb"] for e in body["timeline"]] == ["request.submitted"]


@pytest.mark.parametrize(("automatic", "beyond"), [(True, 5), (False, 6)])
def test_a_submission_costs_few_statements_beyond_the_service(
    operator, acme, monkeypatch, automatic, beyond
):
    """The token with its membership, the action, then the request, its targets and its
    timeline for the answer, and the approvals so far of one waiting for a decision; the
    token's last use is not written again within a minute."""
    if automatic:
        turn_on_auto_approval(acme)
    inside = []
    submit_request = services.submit_request

    def counted(*args, **kwargs):
        with CaptureQueriesContext(connection) as queries:
            created = submit_request(*args, **kwargs)
        inside.append(len(queries))
        return created

    monkeypatch.setattr(services, "submit_request", counted)
    api = api_for(operator, acme)
    assert api.post(requests_url(), ISOLATE).status_code == 201
    with CaptureQueriesContext(connection) as queries:
        response = api.post(requests_url(), ISOLATE)
    assert response.json()["approval_mode"] == ("auto" if automatic else "manual")
    assert len(queries) - inside[-1] == beyond


@pytest.mark.parametrize(
    ("parameters", "field", "fragment"),
    [
        ({"endpoints": "not a host!"}, "endpoints", "`not a host!` is not"),
        ({"endpoints": ""}, "endpoints", None),
        ({"endpoints": "web\u200b01"}, "endpoints", "U+200B"),
        ({"endpoints": "web-01\x00"}, "endpoints", None),
        ({"endpoints": [f"h{i}.acme.test" for i in range(101)]}, "endpoints", "100"),
    ],
)
def test_the_forms_messages_per_field_as_problem_json(operator, acme, parameters, field, fragment):
    response = api_for(operator, acme).post(
        requests_url(), {"action": "isolate_endpoint", "parameters": parameters}
    )
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    errors = response.json()["errors"]
    assert field in errors and errors[field][0]
    if fragment:
        assert fragment in errors[field][0]
    assert not ActionRequest.objects.exists()


def test_the_decision_rule_refuses_as_on_the_page(operator, acme):
    response = api_for(operator, acme).post(
        requests_url(),
        {
            "action": "collect_evidence",
            "parameters": {"endpoints": "web-01.acme.test", "evidence_types": ["amcache"]},
        },
    )
    assert response.status_code == 400
    assert response.json()["errors"]["__all__"] == [AUTO_APPROVAL_REQUIRED]
    assert not ActionRequest.objects.exists()


@pytest.mark.parametrize("action", ["no_such_action", "ISOLATE_ENDPOINT", None, 7])
def test_an_unknown_action_is_refused(operator, acme, action):
    response = api_for(operator, acme).post(requests_url(), {"action": action, "parameters": {}})
    assert response.status_code == 400
    assert "is not an action of the catalog" in response.json()["errors"]["action"][0]


@pytest.mark.parametrize("who", ["admin", "auditor"])
def test_only_operators_submit(cast, acme, who):
    response = api_for(cast[who], acme).post(requests_url(), ISOLATE)
    assert response.status_code == 403
    assert not ActionRequest.objects.exists()


def test_the_same_key_and_body_return_the_same_request(operator, acme):
    api = api_for(operator, acme)
    first = api.post(requests_url(), ISOLATE, HTTP_IDEMPOTENCY_KEY="run-42")
    again = api.post(requests_url(), ISOLATE, HTTP_IDEMPOTENCY_KEY="run-42")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["uuid"] == again.json()["uuid"]
    assert ActionRequest.objects.count() == 1


def test_the_same_key_with_another_body_is_refused(operator, acme):
    api = api_for(operator, acme)
    api.post(requests_url(), ISOLATE, HTTP_IDEMPOTENCY_KEY="run-42")
    other = {**ISOLATE, "parameters": {**ISOLATE["parameters"], "description": "other"}}
    response = api.post(requests_url(), other, HTTP_IDEMPOTENCY_KEY="run-42")
    assert response.status_code == 422
    assert "was already used" in response.json()["detail"]
    assert ActionRequest.objects.count() == 1
    # Another key makes another request.
    assert api.post(requests_url(), other, HTTP_IDEMPOTENCY_KEY="run-43").status_code == 201


@pytest.mark.parametrize("key", ["", "x" * 256, "clé", "a\tb"])
def test_an_unusable_idempotency_key_is_refused(operator, acme, key):
    response = api_for(operator, acme).post(requests_url(), ISOLATE, HTTP_IDEMPOTENCY_KEY=key)
    assert response.status_code == 400
    assert not ActionRequest.objects.exists()


# Reading


def test_the_list_filters_and_pages_by_cursor(operator, acme, globex, outsider):
    made = [submit(acme, operator, endpoints=(f"h{i}.acme.test",)) for i in range(3)]
    services.cancel_request(made[0].pk, actor=operator)
    api = api_for(operator, acme)
    first = api.get(requests_url(), {"page_size": 2}).json()
    assert [r["uuid"] for r in first["results"]] == [str(made[2].uuid), str(made[1].uuid)]
    second = api.client.get(first["next"], **api.headers).json()
    assert [r["uuid"] for r in second["results"]] == [str(made[0].uuid)]
    cancelled = api.get(requests_url(), {"status": "cancelled"}).json()["results"]
    assert [r["uuid"] for r in cancelled] == [str(made[0].uuid)]
    found = api.get(requests_url(), {"q": "h1.acme"}).json()["results"]
    assert [r["uuid"] for r in found] == [str(made[1].uuid)]
    bad = api.get(requests_url(), {"status": "nonsense"})
    assert bad.status_code == 400 and "status" in bad.json()["errors"]


def test_another_organizations_request_is_404(operator, acme, globex, outsider):
    theirs = submit(
        globex,
        Membership.objects.create(user=operator, organization=globex, role=Role.OPERATOR).user,
    )
    api = api_for(operator, acme)
    assert api.get(f"{requests_url()}{theirs.uuid}/").status_code == 404
    assert api.get(f"{requests_url('globex')}{theirs.uuid}/").status_code == 404


# Deciding and cancelling


def test_an_admin_approves_with_the_api_source(operator, admin, acme):
    pending = submit(acme, operator)
    response = api_for(admin, acme, name="approver").post(
        f"{requests_url()}{pending.uuid}/approve/", {"comment": "ok"}
    )
    assert response.status_code == 200
    pending.refresh_from_db()
    assert pending.decided_by == admin and pending.status != RequestStatus.PENDING
    event = AuditEvent.objects.get(verb="request.approved")
    assert (event.source, event.data["api_token"]) == ("api", "approver")


def test_rejecting_needs_a_reason_with_the_pages_words(operator, admin, acme):
    pending = submit(acme, operator)
    api = api_for(admin, acme)
    response = api.post(f"{requests_url()}{pending.uuid}/reject/", {})
    assert response.status_code == 400
    assert response.json()["errors"]["reason"] == [
        "Give a reason for rejecting: the requester will read it."
    ]
    assert (
        api.post(f"{requests_url()}{pending.uuid}/reject/", {"reason": "x\x00"}).status_code == 400
    )
    ok = api.post(f"{requests_url()}{pending.uuid}/reject/", {"reason": "Not this host"})
    assert ok.status_code == 200 and ok.json()["status"] == "rejected"


def test_a_stale_decision_is_refused_with_what_happened(operator, admin, acme):
    pending = submit(acme, operator)
    api = api_for(admin, acme)
    assert api.post(f"{requests_url()}{pending.uuid}/approve/").status_code == 200
    again = api.post(f"{requests_url()}{pending.uuid}/reject/", {"reason": "late"})
    assert again.status_code == 409
    assert "already approved by acme-admin" in again.json()["detail"]


def test_an_expired_request_is_refused(operator, admin, acme):
    pending = submit(acme, operator)
    ActionRequest.objects.filter(pk=pending.pk).update(expires_at=timezone.now())
    response = api_for(admin, acme).post(f"{requests_url()}{pending.uuid}/approve/")
    assert response.status_code == 409 and "expired" in response.json()["detail"]


def test_never_ones_own_request_even_after_becoming_admin(operator, acme):
    pending = submit(acme, operator)
    api = api_for(operator, acme)
    assert api.post(f"{requests_url()}{pending.uuid}/approve/").status_code == 403
    # The role changes: the same token follows it at once.
    Membership.objects.filter(user=operator).update(role=Role.ADMIN)
    response = api.post(f"{requests_url()}{pending.uuid}/approve/")
    assert response.status_code == 403
    assert "separation of duties" in response.json()["detail"]
    pending.refresh_from_db()
    assert pending.status == RequestStatus.PENDING


def test_only_the_requester_cancels(operator, admin, acme):
    pending = submit(acme, operator)
    assert api_for(admin, acme).post(f"{requests_url()}{pending.uuid}/cancel/").status_code == 403
    response = api_for(operator, acme).post(f"{requests_url()}{pending.uuid}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"


# The access matrix: every route, every kind of caller

ROUTES = [
    ("GET", "actions/", None),
    ("GET", "requests/", None),
    ("POST", "requests/", None),
    ("GET", "requests/{uuid}/", None),
    ("POST", "requests/{uuid}/cancel/", "operator"),
    ("POST", "requests/{uuid}/approve/", "admin"),
    ("POST", "requests/{uuid}/reject/", "admin"),
]


def _call(api_or_client, method, path, headers=None):
    client = api_or_client
    if method == "GET":
        return client.get(path, **(headers or {}))
    return client.post(path, {}, content_type="application/json", **(headers or {}))


@pytest.mark.parametrize(("method", "route", "role"), ROUTES)
def test_every_route_answers_each_caller(cast, acme, globex, method, route, role):
    operator, admin, auditor, outsider = (
        cast[w] for w in ("operator", "admin", "auditor", "outsider")
    )
    pending = submit(acme, operator)
    path = "/api/v1/orgs/acme/" + route.format(uuid=pending.uuid)
    before = list(ActionRequest.objects.values_list("pk", "status"))
    # Anonymous, a revoked token, an expired token: 401.
    assert _call(Client(), method, path).status_code == 401
    token, secret = create_token(admin, acme, name="old")
    revoke_token(token.pk, actor=admin)
    assert (
        _call(Client(), method, path, {"HTTP_AUTHORIZATION": f"Bearer {secret}"}).status_code == 401
    )
    token, secret = create_token(admin, acme, name="expired")
    type(token).objects.filter(pk=token.pk).update(expires_at=timezone.now())
    assert (
        _call(Client(), method, path, {"HTTP_AUTHORIZATION": f"Bearer {secret}"}).status_code == 401
    )
    # Another organization's token: 404.
    outsider_api = api_for(outsider, globex)
    assert _call(outsider_api.client, method, path, outsider_api.headers).status_code == 404
    # A wrong role: 403.
    if role is not None or (method, route) == ("POST", "requests/"):
        wrong = auditor
        api = api_for(wrong, acme)
        assert _call(api.client, method, path, api.headers).status_code == 403
    assert list(ActionRequest.objects.values_list("pk", "status")) == before

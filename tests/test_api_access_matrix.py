"""Every route of /api/v1/, for every kind of caller: no token, a revoked or expired one, another
organization's, each role of the organization.

The routes come from api/v1_urls.py, so a route added there fails this test until the table says
who may use it.
"""

import pytest
from django.core.cache import caches
from django.test import Client
from django.urls import URLPattern, reverse
from django.utils import timezone

from api import v1_urls
from api.tokens import create_token, revoke_token
from approvals.models import ActionRequest, ApprovalSettings
from audit.models import AuditEvent
from responseportal.models import Membership, Role

from .approvals_helpers import submit
from .test_api_requests import ISOLATE

pytestmark = pytest.mark.django_db

EVERYONE = {"operator", "admin", "auditor"}
# url name: {method: the roles that may}
ROUTES = {
    "api_catalog": {"GET": EVERYONE},
    "api_requests": {"GET": EVERYONE, "POST": {"operator"}},
    "api_request": {"GET": EVERYONE},
    "api_request_cancel": {"POST": {"operator"}},
    "api_request_approve": {"POST": {"admin"}},
    "api_request_reject": {"POST": {"admin"}},
    "api_approval_settings": {"GET": EVERYONE, "PUT": {"admin"}, "PATCH": {"admin"}},
    "api_audit_events": {"GET": {"admin", "auditor"}},
}
# The schema and its documentation page describe the API to anyone (tests/test_api_tokens.py).
PUBLIC = {"api_schema", "api_docs"}
# A body the route would accept, so that only the caller can be the reason for a refusal.
BODIES = {
    ("api_requests", "POST"): ISOLATE,
    ("api_request_reject", "POST"): {"reason": "Not this host"},
    ("api_approval_settings", "PATCH"): {"pending_lifetime_hours": 24},
}


@pytest.fixture(autouse=True)
def _fresh_rate_counts():
    caches["default"].clear()


def test_every_api_route_is_in_the_table():
    names = {p.name for p in v1_urls.urlpatterns if isinstance(p, URLPattern)}
    assert names == set(ROUTES) | PUBLIC, "Say in ROUTES who may use each route of api/v1"
    assert all(isinstance(p, URLPattern) for p in v1_urls.urlpatterns), (
        "api/v1 includes routes this test cannot see"
    )


def call(method: str, path: str, body, secret: str | None, if_match: str | None):
    headers = {}
    if secret is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
    if if_match is not None:
        headers["HTTP_IF_MATCH"] = if_match
    send = getattr(Client(), method.lower())
    if method == "GET":
        return send(path, **headers)
    return send(path, body, content_type="application/json", **headers)


def state() -> tuple:
    """What a refused call must leave as it was."""
    return (
        list(ActionRequest.objects.order_by("pk").values_list("pk", "status")),
        list(ApprovalSettings.objects.values_list("organization_id", "version")),
        AuditEvent.objects.exclude(verb__startswith="api_token.").count(),
    )


def secret_of(user, organization, name, *, revoked=False, expired=False) -> str:
    token, secret = create_token(user, organization, name=name)
    if revoked:
        revoke_token(token.pk, actor=user)
    if expired:
        type(token).objects.filter(pk=token.pk).update(expires_at=timezone.now())
    return secret


CASES = [(name, method) for name, methods in ROUTES.items() for method in methods]


def body_for(name: str, method: str, admin, organization) -> dict:
    if (name, method) == ("api_approval_settings", "PUT"):
        # Every setting, as read: PUT names them all.
        path = reverse(name, args=[organization.slug])
        read = call("GET", path, None, secret_of(admin, organization, "read"), None)
        return read.json()["settings"]
    return BODIES.get((name, method), {})


def path_for(name: str, pending: ActionRequest) -> str:
    kwargs = {"slug": pending.organization.slug}
    if "<uuid:uuid>" in str(next(p for p in v1_urls.urlpatterns if p.name == name).pattern):
        kwargs["uuid"] = pending.uuid
    return reverse(name, kwargs=kwargs)


@pytest.mark.parametrize(("name", "method"), CASES)
def test_each_caller_gets_what_its_role_allows(cast, acme, globex, name, method):
    allowed = ROUTES[name][method]
    pending = submit(acme, cast["operator"])
    path = path_for(name, pending)
    body = body_for(name, method, cast["admin"], acme)
    etag = '"approval-settings-0"'
    before = state()

    # No token, a revoked one, an expired one: 401, as problem+json.
    admin = cast["admin"]
    for secret in (
        None,
        secret_of(admin, acme, "revoked", revoked=True),
        secret_of(admin, acme, "expired", expired=True),
    ):
        response = call(method, path, body, secret, etag)
        assert response.status_code == 401, (secret, response.content)
        assert response["Content-Type"] == "application/problem+json"
    # Another organization's admin, with a token of their own organization: 404.
    response = call(method, path, body, secret_of(cast["outsider"], globex, "theirs"), etag)
    assert response.status_code == 404
    # A role that may not: 403, saying why.
    for who in sorted(EVERYONE - allowed):
        response = call(method, path, body, secret_of(cast[who], acme, who), etag)
        assert response.status_code == 403, who
        assert response.json()["detail"]
    assert state() == before
    # The roles that may are let in.
    for who in sorted(allowed):
        response = call(method, path, body, secret_of(cast[who], acme, f"{who}-ok"), etag)
        assert response.status_code in {200, 201}, (who, response.content)


@pytest.mark.parametrize(("name", "method"), CASES)
def test_a_members_token_for_another_organization_is_404_here(
    operator, admin, acme, globex, name, method
):
    """The admin is also a member of globex: a globex token acts in globex only."""
    Membership.objects.create(user=admin, organization=globex, role=Role.ADMIN)
    pending = submit(acme, operator)
    before = state()
    response = call(
        method,
        path_for(name, pending),
        body_for(name, method, admin, acme),
        secret_of(admin, globex, "globex"),
        '"approval-settings-0"',
    )
    assert response.status_code == 404
    assert state() == before

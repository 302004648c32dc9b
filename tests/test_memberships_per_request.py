"""An organization's page reads the user's memberships once, and only for that request."""

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import Http404, HttpResponse
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.middleware import SecondFactorPolicyMiddleware
from responseportal.access import get_membership
from responseportal.models import Membership, Role

from .conftest import client_for

pytestmark = pytest.mark.django_db


def membership_reads(queries) -> int:
    return sum('FROM "responseportal_membership"' in q["sql"] for q in queries.captured_queries)


@pytest.mark.parametrize("name", ["org_dashboard", "request_list", "audit_log"])
def test_a_page_reads_the_memberships_once(admin, name):
    client = client_for(admin)
    with CaptureQueriesContext(connection) as queries:
        assert client.get(reverse(name, args=["acme"])).status_code == 200
    assert membership_reads(queries) == 1


def test_the_page_decides_from_the_memberships_it_read(admin, outsider, globex):
    client = client_for(admin)
    assert client.get(reverse("audit_log", args=["globex"])).status_code == 404
    Membership.objects.filter(user=admin).update(role=Role.AUDITOR)
    assert client.get(reverse("audit_log", args=["acme"])).status_code == 200
    assert client.get(reverse("queue", args=["acme"])).status_code == 403


def run(request, view, slug="acme"):
    """`view` behind the policy middleware, as the handler calls it on an organization's page."""
    middleware = SecondFactorPolicyMiddleware(
        lambda r: middleware.process_view(r, view, (), {"slug": slug}) or view(r, slug=slug)
    )
    return middleware(request)


def test_the_memberships_kept_for_a_request_are_gone_after_it(admin):
    request = RequestFactory().get("/")
    request.user = admin
    seen = []

    def view(request, slug):
        with CaptureQueriesContext(connection) as queries:
            seen.append(get_membership(request.user, slug, roles=[Role.ADMIN]))
        assert membership_reads(queries) == 0
        return HttpResponse()

    run(request, view)
    assert seen[0].role == Role.ADMIN
    Membership.objects.filter(user=admin).update(role=Role.OPERATOR)
    # The same user object, after the request: read again, and refused.
    with pytest.raises(PermissionDenied):
        get_membership(admin, "acme", roles=[Role.ADMIN])
    Membership.objects.filter(user=admin).delete()
    with pytest.raises(Http404):
        get_membership(admin, "acme")


def test_they_are_gone_after_a_view_that_failed(admin):
    request = RequestFactory().get("/")
    request.user = admin

    def view(request, slug):
        raise RuntimeError("the view failed")

    with pytest.raises(RuntimeError):
        run(request, view)
    Membership.objects.filter(user=admin).delete()
    with pytest.raises(Http404):
        get_membership(admin, "acme")


def test_an_anonymous_request_keeps_nothing_and_is_a_404():
    request = RequestFactory().get("/")
    request.user = AnonymousUser()

    def view(request, slug):
        get_membership(request.user, slug)
        return HttpResponse()

    with pytest.raises(Http404):
        run(request, view)

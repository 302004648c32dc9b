"""A body past the limit gets a JSON 413 on every route of the API, whatever the method, the
token or the content type, and nothing of it is read or acted on: the portal's own routes
answer `application/problem+json`, Trend's routes their `{"error": …}`."""

import pytest
from django.core.cache import caches
from django.test import Client
from django.urls import URLPattern, reverse

from api import trend_urls, v1_urls
from api.middleware import body_limit
from api.tokens import create_token
from approvals.models import ActionRequest, RequestStatus
from audit.models import AuditEvent

from .approvals_helpers import submit

LIMIT = 10_000
METHODS = ("POST", "PUT", "PATCH", "DELETE", "GET")


@pytest.fixture(autouse=True)
def _small_limit(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = LIMIT
    caches["default"].clear()


@pytest.fixture
def pending(acme, operator):
    return submit(acme, operator)


def v1_paths(pending) -> list[str]:
    """Every route of api/v1, with arguments that name a real request of acme."""
    arguments = {"slug": "acme", "uuid": pending.uuid}
    paths = []
    for pattern in v1_urls.urlpatterns:
        assert isinstance(pattern, URLPattern)
        wanted = {name: arguments[name] for name in pattern.pattern.converters}
        paths.append(reverse(pattern.name, kwargs=wanted))
    return paths


def trend_paths() -> list[str]:
    return [
        "/v3.0/" + str(pattern.pattern).removeprefix("v3.0/").replace("<str:task_id>", "x-0")
        for pattern in trend_urls.urlpatterns
        if not str(pattern.pattern).startswith("^")
    ] + ["/v3.0/response/endpoints/notACall", "/v3.0"]


def send(method: str, path: str, size: int, secret: str, content_type="application/json"):
    body = b"[" + b" " * (size - 2) + b"]"
    return Client().generic(
        method, path, body, content_type=content_type, HTTP_AUTHORIZATION=f"Bearer {secret}"
    )


def test_every_portal_route_answers_a_problem(operator, admin, acme, pending):
    before = AuditEvent.objects.count()
    paths = v1_paths(pending)
    assert len(paths) == len(v1_urls.urlpatterns) >= 9
    for user in (operator, admin):
        _, secret = create_token(user, acme, name=f"SOAR {user}")
        for path in paths:
            for method in METHODS:
                response = send(method, path, LIMIT + 1, secret)
                assert response.status_code == 413, (user, method, path)
                assert response["Content-Type"] == "application/problem+json"
                assert response.json() == {
                    "type": "about:blank",
                    "title": "Content too large",
                    "status": 413,
                    "detail": "The body is larger than 10,000 bytes: send less at a time.",
                }
    pending.refresh_from_db()
    assert pending.status == RequestStatus.PENDING  # the cancel, approve and reject were not run
    assert ActionRequest.objects.count() == 1
    assert AuditEvent.objects.count() == before + 2  # the two tokens' creation, nothing else


def test_every_trend_route_answers_in_trends_words(operator, acme):
    _, secret = create_token(operator, acme, name="pytmv1")
    paths = trend_paths()
    assert len(paths) == len(trend_urls.urlpatterns) + 1
    for path in paths:
        for method in ("POST", "GET"):
            response = send(method, path, LIMIT + 1, secret)
            assert response.status_code == 413, (method, path)
            assert response["Content-Type"] == "application/json"
            assert response.json() == {
                "error": {
                    "code": "RequestEntityTooLarge",
                    "message": "The body is too large: expected at most 10000 bytes.",
                }
            }
    assert not ActionRequest.objects.exists()


def test_trends_own_limit_holds_under_a_larger_upload_limit(operator, acme, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 5_000_000
    _, secret = create_token(operator, acme, name="pytmv1")
    response = send("POST", "/v3.0/response/endpoints/isolate", 1_048_577, secret)
    assert response.status_code == 413
    assert response.json()["error"]["message"] == (
        "The body is too large: expected at most 1048576 bytes."
    )


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
def test_the_limit_comes_before_the_token_and_the_content_type(acme, pending, content_type):
    response = send(
        "POST",
        f"/api/v1/orgs/acme/requests/{pending.uuid}/cancel/",
        LIMIT + 1,
        "rp_wrong",
        content_type,
    )
    assert response.status_code == 413
    assert response["Content-Type"] == "application/problem+json"


def test_a_body_at_the_limit_goes_through(operator, acme, pending):
    _, secret = create_token(operator, acme, name="SOAR")
    response = send("POST", f"/api/v1/orgs/acme/requests/{pending.uuid}/cancel/", LIMIT, secret)
    assert response.status_code == 200
    assert response.json()["status"] == RequestStatus.CANCELLED


def test_an_unreadable_length_is_refused(operator, acme):
    _, secret = create_token(operator, acme, name="SOAR")
    response = Client().post(
        "/api/v1/orgs/acme/requests/",
        b"{}",
        content_type="application/json",
        CONTENT_LENGTH="12abc",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("path", "limit"),
    [
        ("/api/v1/orgs/acme/requests/", LIMIT),
        ("/api/v1/anything/", LIMIT),
        ("/v3.0", LIMIT),
        ("/v3.0/response/endpoints/isolate", LIMIT),
        ("/orgs/acme/requests/new/isolate_endpoint/", None),
        ("/api/v10/", None),
        ("/v3.01/", None),
        ("/account/api-tokens/", None),
    ],
)
def test_the_limit_covers_the_api_and_only_it(path, limit):
    """The pages keep Django's own handling of their forms' bodies."""
    assert body_limit(path) == limit

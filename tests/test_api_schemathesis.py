"""Schemathesis against /api/v1/schema/: generated calls to every operation, with an admin's and
an operator's token, never answer 5xx, and every answer conforms to the schema (status, content
type, headers and body)."""

import json

import pytest
import schemathesis
from django.core.cache import caches
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from api.tokens import create_token
from approvals.models import ApprovalSettings
from audit.chain import record

from .approvals_helpers import submit

# No 5xx, and every answer as the schema says. Not the checks that a schema-valid body is
# accepted: the forms' rules go beyond what a schema says (a value in range, a real host).
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    unsupported_method,
    allow_header_conformance,
]
# The calls an operator makes; an admin's token makes the others (the GETs of every member).
OPERATOR_CALLS = {
    ("POST", "/api/v1/orgs/{slug}/requests/"),
    ("POST", "/api/v1/orgs/{slug}/requests/{uuid}/cancel/"),
    ("GET", "/api/v1/orgs/{slug}/actions/"),
    ("GET", "/api/v1/orgs/{slug}/requests/"),
}
ROLES = ("admin", "operator")
# Generated calls per operation, past the schema's own examples and boundary values.
MAX_EXAMPLES = 25


def served_schema() -> dict:
    """The document /api/v1/schema/ serves (checked below), made without a request."""
    return json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True)))


schema = schemathesis.openapi.from_dict(served_schema())
schema.app = get_wsgi_application()


@pytest.fixture
def wsgi_calls_keep_the_test_connection():
    """Schemathesis calls the WSGI application directly, and at the end of each request Django
    closes the database connection, with the test's transaction in it (on PostgreSQL). Django's
    test client unhooks that handler for its requests; this does the same for the test."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def callers(cast, acme, settings, wsgi_calls_keep_the_test_connection):
    """The secrets of an admin's and an operator's token, and a pending request."""
    settings.ALLOWED_HOSTS = ["localhost", "testserver"]
    settings.API_RATE_LIMIT = "1000000/min"  # the generated calls are many, and quick
    caches["default"].clear()
    pending = submit(acme, cast["operator"])
    record(acme, "settings.changed", actor=cast["admin"], data={"n": 1})
    return {
        "pending": pending,
        "organization": acme,
        **{who: create_token(cast[who], acme, name=f"fuzz-{who}")[1] for who in ROLES},
    }


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_the_api_answers_as_its_schema_says(case, callers):
    case.path_parameters = {**(case.path_parameters or {}), "slug": "acme"}
    if "uuid" in case.path_parameters:
        case.path_parameters["uuid"] = str(callers["pending"].uuid)
    if case.method in {"PATCH", "PUT"}:
        # Past the If-Match check (tests/test_api_settings.py tries the others), to the form.
        version = ApprovalSettings.for_organization(callers["organization"]).version
        case.headers = {**(case.headers or {}), "If-Match": f'"approval-settings-{version}"'}
    # Each call by the role it is for, so that it gets past the role check.
    who = "operator" if (case.method, case.path) in OPERATOR_CALLS else "admin"
    case.call_and_validate(headers={"Authorization": f"Bearer {callers[who]}"}, checks=CHECKS)


def test_the_schema_tested_is_the_one_served_and_holds_only_api_v1(client, db):
    served = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert served.json() == served_schema()
    paths = served.json()["paths"]
    assert paths and all(path.startswith("/api/v1/orgs/") for path in paths), sorted(paths)

"""API tokens: made on their page or by command, shown once, stored as a hash, revoked by their
owner or an organization admin, and refused (401) when missing, malformed, revoked or expired."""

import base64
import hashlib
import io
import re
from datetime import timedelta

import pytest
import time_machine
from django.core.cache import caches
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from api.models import ApiToken
from api.tokens import create_token, revoke_token
from audit.chain import chain_of, verify_chain
from audit.models import AuditEvent
from responseportal.models import Membership, Role

from .conftest import client_for

CATALOG = "/api/v1/orgs/acme/actions/"


@pytest.fixture(autouse=True)
def _fresh_rate_counts():
    caches["default"].clear()
    yield
    caches["default"].clear()


def bearer(secret: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {secret}"}


def make(user, organization, name="playbook", days=90):
    return create_token(user, organization, name=name, days=days)


# The secret


def test_secret_has_the_prefix_and_256_random_bits(operator, acme):
    _, secret = make(operator, acme)
    assert re.fullmatch(r"rp_[A-Za-z0-9_-]{43}", secret)
    assert len(base64.urlsafe_b64decode(secret[3:] + "=")) == 32


def test_two_secrets_differ(operator, acme):
    assert make(operator, acme)[1] != make(operator, acme)[1]


def test_only_the_hash_of_the_secret_is_stored(operator, acme):
    token, secret = make(operator, acme)
    row = ApiToken.objects.filter(pk=token.pk).values().get()
    assert row["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert not any(secret in str(value) for value in row.values())
    assert secret[8:] not in str(row)
    assert not any(secret in str(e.data) for e in AuditEvent.objects.all())


def test_expiry_defaults_to_90_days_and_stops_at_365(operator, acme):
    token, _ = make(operator, acme)
    assert abs(token.expires_at - (timezone.now() + timedelta(days=90))) < timedelta(minutes=1)
    with pytest.raises(Exception, match="366 days is not a valid lifetime: expected 1 to 365"):
        make(operator, acme, days=366)


# The page


def test_the_page_shows_the_secret_once(operator, acme):
    client = client_for(operator)
    response = client.post(
        "/account/api-tokens/", {"name": "SOAR", "organization": "acme", "days": "30"}
    )
    assert response.status_code == 200
    secret = re.search(rb"rp_[A-Za-z0-9_-]{43}", response.content).group().decode()
    token = ApiToken.objects.get(user=operator)
    assert token.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert token.name == "SOAR"
    assert abs(token.expires_at - (timezone.now() + timedelta(days=30))) < timedelta(minutes=1)
    again = client.get("/account/api-tokens/")
    assert secret.encode() not in again.content
    assert b"SOAR" in again.content
    assert response["Cache-Control"].startswith("max-age=0")


def test_the_user_menu_links_to_the_page(operator):
    assert b'href="/account/api-tokens/"' in client_for(operator).get("/orgs/").content


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"days": "366"}, "A token lasts at most 365 days: expected 1 to 365."),
        ({"days": "0"}, "Expected a whole number of days, 1 to 365."),
        ({"days": "9" * 400}, "A token lasts at most 365 days"),
        ({"days": "３０"}, None),  # full-width digits: Django reads them as 30
        ({"days": "ninety"}, "Expected a whole number of days, 1 to 365."),
        ({"name": ""}, "Give the token a name"),
        ({"name": "   "}, "Give the token a name"),
        ({"name": "x" * 101}, "The name is too long: expected at most 100 characters."),
        ({"name": "play\u202ebook"}, "U+202E"),
        ({"name": "play\u200bbook"}, "U+200B"),
        ({"name": "play\x00book"}, "NUL character"),
        ({"name": "play\nbook"}, "The name holds a line break"),
        ({"organization": "globex"}, "`globex` is not one of your organizations"),
        ({"organization": "ACME"}, "`ACME` is not one of your organizations"),
    ],
)
def test_the_form_refuses_with_a_message(operator, acme, globex, fields, message):
    data = {"name": "SOAR", "organization": "acme", "days": "90", **fields}
    response = client_for(operator).post("/account/api-tokens/", data)
    if message is None:
        assert ApiToken.objects.get().expires_at > timezone.now() + timedelta(days=29)
        return
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not ApiToken.objects.exists()


def test_the_page_lists_only_ones_own_tokens_with_their_last_use(operator, admin, acme):
    mine, secret = make(operator, acme, name="mine")
    make(admin, acme, name="theirs")
    Client().get(CATALOG, REMOTE_ADDR="203.0.113.7", **bearer(secret))
    page = client_for(operator).get("/account/api-tokens/").content.decode()
    assert "mine" in page and "theirs" not in page
    assert "203.0.113.7" in page
    mine.refresh_from_db()
    assert mine.last_used_ip == "203.0.113.7"
    assert timezone.now() - mine.last_used_at < timedelta(minutes=1)


def test_the_last_use_is_written_once_a_minute_per_address(operator, acme):
    token, secret = make(operator, acme)
    client = Client()
    start = timezone.now()
    with time_machine.travel(start, tick=False) as traveller:
        client.get(CATALOG, REMOTE_ADDR="203.0.113.7", **bearer(secret))
        token.refresh_from_db()
        assert (token.last_used_at, token.last_used_ip) == (start, "203.0.113.7")

        traveller.shift(timedelta(seconds=59))
        with CaptureQueriesContext(connection) as queries:
            client.get(CATALOG, REMOTE_ADDR="203.0.113.7", **bearer(secret))
        assert not [q for q in queries if q["sql"].startswith('UPDATE "api_apitoken"')]
        token.refresh_from_db()
        assert token.last_used_at == start

        client.get(CATALOG, REMOTE_ADDR="198.51.100.4", **bearer(secret))
        token.refresh_from_db()
        assert token.last_used_at == start + timedelta(seconds=59)
        assert token.last_used_ip == "198.51.100.4"

        traveller.shift(timedelta(seconds=60))
        client.get(CATALOG, REMOTE_ADDR="198.51.100.4", **bearer(secret))
        token.refresh_from_db()
        assert token.last_used_at == start + timedelta(seconds=119)


def test_a_member_who_left_is_refused_though_the_token_is_valid(operator, acme):
    _, secret = make(operator, acme)
    Membership.objects.filter(user=operator, organization=acme).delete()
    response = Client().get(CATALOG, **bearer(secret))
    assert response.status_code == 401
    assert "no longer a member of Acme Corporation" in response.json()["detail"]


def test_a_demoted_admin_is_refused_at_once_with_the_pages_words(admin, acme):
    _, secret = make(admin, acme)
    client = Client()
    assert client.get("/api/v1/orgs/acme/settings/approval/", **bearer(secret)).status_code == 200
    Membership.objects.filter(user=admin).update(role=Role.AUDITOR)
    response = client.patch(
        "/api/v1/orgs/acme/settings/approval/",
        {},
        content_type="application/json",
        HTTP_IF_MATCH='"approval-settings-0"',
        **bearer(secret),
    )
    assert response.status_code == 403
    assert response.json()["detail"] == (
        "This page is for the admin role of Acme Corporation; you are auditor."
    )


def test_the_page_needs_a_sign_in(client):
    response = client.get("/account/api-tokens/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# Revoking


def test_the_owner_revokes_and_the_token_stops_working_at_once(operator, acme, client):
    token, secret = make(operator, acme)
    assert client.get(CATALOG, **bearer(secret)).status_code == 200
    client_for(operator).post(f"/account/api-tokens/{token.pk}/revoke/")
    token.refresh_from_db()
    assert token.revoked_at is not None and token.revoked_by == operator
    response = client.get(CATALOG, **bearer(secret))
    assert response.status_code == 401
    assert "was revoked" in response.json()["detail"]


def test_nobody_else_revokes_from_their_own_page(operator, admin, acme):
    token, _ = make(operator, acme)
    response = client_for(admin).post(f"/account/api-tokens/{token.pk}/revoke/")
    assert response.status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None


def test_revoking_twice_is_refused_with_when(operator, acme):
    token, _ = make(operator, acme)
    revoke_token(token.pk, actor=operator)
    with pytest.raises(Exception, match="was already revoked at"):
        revoke_token(token.pk, actor=operator)


def test_admins_see_every_token_of_their_organization_and_revoke_it(
    operator, admin, auditor, outsider, acme, globex
):
    token, secret = make(operator, acme, name="operator-playbook")
    make(outsider, globex, name="globex-playbook")
    page = client_for(admin).get("/orgs/acme/api-tokens/").content.decode()
    assert "operator-playbook" in page and "globex-playbook" not in page
    assert ">operator<" in page
    client_for(admin).post(f"/orgs/acme/api-tokens/{token.pk}/revoke/")
    token.refresh_from_db()
    assert token.revoked_by == admin


@pytest.mark.parametrize(
    ("who", "status"), [("operator", 403), ("auditor", 403), ("outsider", 404)]
)
def test_only_admins_of_the_organization_see_its_tokens(cast, who, status):
    token, _ = make(cast["operator"], cast["operator"].memberships.get().organization)
    client = client_for(cast[who])
    assert client.get("/orgs/acme/api-tokens/").status_code == status
    assert client.post(f"/orgs/acme/api-tokens/{token.pk}/revoke/").status_code == status
    token.refresh_from_db()
    assert token.revoked_at is None


def test_an_admin_of_another_organization_cannot_revoke_through_their_own(
    operator, outsider, acme, globex
):
    token, _ = make(operator, acme)
    response = client_for(outsider).post(f"/orgs/globex/api-tokens/{token.pk}/revoke/")
    assert response.status_code == 404


def test_creating_and_revoking_are_audit_events_in_the_chain(operator, admin, acme):
    token, _ = make(operator, acme, name="SOAR")
    revoke_token(token.pk, actor=admin)
    events = list(AuditEvent.objects.filter(organization=acme).order_by("sequence"))
    assert [e.verb for e in events] == ["api_token.created", "api_token.revoked"]
    assert [e.actor_username for e in events] == ["operator", "acme-admin"]
    assert [e.role for e in events] == ["operator", "admin"]
    assert events[0].data["token"] == "SOAR" and events[0].data["owner"] == "operator"
    report = verify_chain(chain_of(acme))
    assert (report.checked, report.first_break) == (2, None)


# The command


def test_the_command_prints_the_secret_alone_on_the_last_line(operator, acme):
    out = io.StringIO()
    call_command("create_api_token", "operator", org="acme", name="cron", days=7, stdout=out)
    last = out.getvalue().rstrip("\n").split("\n")[-1]
    assert re.fullmatch(r"rp_[A-Za-z0-9_-]{43}", last)
    token = ApiToken.objects.get(secret_hash=hashlib.sha256(last.encode()).hexdigest())
    assert (token.user, token.organization, token.name) == (operator, acme, "cron")
    assert abs(token.expires_at - (timezone.now() + timedelta(days=7))) < timedelta(minutes=1)


@pytest.mark.parametrize(
    ("username", "org", "name", "days", "message"),
    [
        ("nobody", "acme", "x", 90, "No user is named `nobody`"),
        ("operator", "nowhere", "x", 90, "No organization has the slug `nowhere`"),
        ("operator", "globex", "x", 90, "operator is not a member of Globex Corporation"),
        ("operator", "acme", "x", 366, "--days 366: expected 1 to 365 days."),
        ("operator", "acme", "x", 0, "--days 0: expected 1 to 365 days."),
        ("operator", "acme", "a\x00b", 90, "is not a token name"),
        ("operator", "acme", "", 90, "is not a token name"),
    ],
)
def test_the_command_refuses_with_a_message(
    operator, acme, globex, username, org, name, days, message
):
    with pytest.raises(CommandError, match=re.escape(message)):
        call_command("create_api_token", username, org=org, name=name, days=days)
    assert not ApiToken.objects.exists()


# Authentication


def test_no_token_is_401_problem_json(client, acme):
    response = client.get(CATALOG)
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert response["WWW-Authenticate"].startswith("Bearer")
    body = response.json()
    assert body["status"] == 401 and body["detail"]


def test_a_session_is_not_enough(operator, acme):
    assert client_for(operator).get(CATALOG).status_code == 401


@pytest.mark.parametrize(
    "header",
    [
        "Basic b3BlcmF0b3I6cGFzc3dvcmQ=",
        "Token rp_" + "a" * 43,
        "Bearer",
        "Bearer ",
        "Bearer rp_short",
        "Bearer RP_" + "a" * 43,
        "Bearer rp_" + "a" * 44,
        "Bearer rp_" + "a" * 42 + "\u200b",
        "Bearer rp_" + "a" * 42 + "=",
        "Bearer rp_" + "a" * 42 + "é",
        "Bearer rp_" + "a" * 10_000,
        "Bearer rp_" + "a" * 43,  # well formed but unknown
    ],
)
def test_a_malformed_or_unknown_token_is_401(client, acme, header):
    response = client.get(CATALOG, HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"


def test_a_token_with_a_nul_byte_is_401(client, operator, acme):
    _, secret = make(operator, acme)
    response = client.get(CATALOG, HTTP_AUTHORIZATION=f"Bearer {secret[:-1]}\x00")
    assert response.status_code == 401


def test_an_expired_token_is_401(client, operator, acme):
    token, secret = make(operator, acme)
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = client.get(CATALOG, **bearer(secret))
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


def test_a_token_whose_user_left_the_organization_is_401(client, operator, acme):
    _, secret = make(operator, acme)
    Membership.objects.filter(user=operator).delete()
    response = client.get(CATALOG, **bearer(secret))
    assert response.status_code == 401
    assert "no longer a member of Acme Corporation" in response.json()["detail"]


def test_a_token_of_a_deactivated_user_is_401(client, operator, acme):
    _, secret = make(operator, acme)
    operator.is_active = False
    operator.save()
    assert client.get(CATALOG, **bearer(secret)).status_code == 401


def test_another_organizations_objects_are_404(client, operator, outsider, acme, globex):
    _, secret = make(operator, acme)
    assert client.get("/api/v1/orgs/globex/actions/", **bearer(secret)).status_code == 404
    assert client.get("/api/v1/orgs/nowhere/actions/", **bearer(secret)).status_code == 404


def test_a_token_acts_only_in_its_own_organization_even_for_a_member_of_both(
    client, operator, acme, globex
):
    Membership.objects.create(user=operator, organization=globex, role=Role.OPERATOR)
    _, secret = make(operator, acme)
    assert client.get("/api/v1/orgs/globex/actions/", **bearer(secret)).status_code == 404


# The rate limit


def test_requests_past_the_limit_are_429_with_retry_after(client, operator, admin, acme, settings):
    settings.API_RATE_LIMIT = "3/min"
    _, secret = make(operator, acme)
    _, other = make(admin, acme)
    assert [client.get(CATALOG, **bearer(secret)).status_code for _ in range(3)] == [200] * 3
    refused = client.get(CATALOG, **bearer(secret))
    assert refused.status_code == 429
    assert refused["Content-Type"] == "application/problem+json"
    assert 1 <= int(refused["Retry-After"]) <= 60
    # Counted per token: another token of the same organization is not held back.
    assert client.get(CATALOG, **bearer(other)).status_code == 200


# The schema and its documentation page


def test_the_schema_describes_the_routes_and_the_bearer_scheme(client, db):
    response = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/orgs/{slug}/actions/" in schema["paths"]
    assert schema["components"]["securitySchemes"]["bearerToken"]["scheme"] == "bearer"
    for route in ("requests/", "requests/{uuid}/", "requests/{uuid}/approve/"):
        assert f"/api/v1/orgs/{{slug}}/{route}" in schema["paths"]


def test_the_docs_page_runs_under_the_csp_with_local_assets_only(client, db):
    response = client.get("/api/v1/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    # No inline script or style, which the policy would block; every asset from this site.
    assert re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page) is None
    assert "<style" not in page
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources and all(source.startswith("/") for source in sources)
    for source in sources:
        assert client.get(source).status_code == 200, source

"""Every URL of the project, for every kind of visitor.

The URL patterns come from the resolver, so a new page is covered the day it is added: a
pattern this table does not classify fails the test until someone says who may use it.
"""

import pytest
from django.urls import NoReverseMatch, URLPattern, URLResolver, get_resolver, reverse

from approvals.models import ActionRequest
from audit.models import AuditEvent

from .approvals_helpers import submit
from .conftest import client_for

pytestmark = pytest.mark.django_db

EVERYONE = {"operator", "admin", "auditor"}
CAST = ("operator", "admin", "auditor", "outsider")

# url name: (method, about one request?, roles that may, status for them, extra POST data)
MATRIX = {
    "org_dashboard": ("GET", False, EVERYONE, 200, {}),
    "request_list": ("GET", False, EVERYONE, 200, {}),
    "request_detail": ("GET", True, EVERYONE, 200, {}),
    "request_status": ("GET", True, EVERYONE, 200, {}),
    "request_chooser": ("GET", False, {"operator"}, 200, {}),
    "new_request": ("GET", False, {"operator"}, 200, {}),
    "request_approve": ("POST", True, {"admin"}, 302, {}),
    "request_reject": ("POST", True, {"admin"}, 302, {"reason": "Not this host"}),
    "request_cancel": ("POST", True, {"operator"}, 302, {}),
    "end_session": ("POST", True, {"admin"}, 302, {"reason": "Done"}),
    "request_review": ("POST", True, {"admin"}, 302, {"outcome": "accept"}),
    "request_undo": ("POST", True, {"operator"}, 302, {}),
    "needs_review": ("GET", False, {"admin"}, 200, {}),
    "queue": ("GET", False, {"admin"}, 200, {}),
    "approval_settings": ("GET", False, EVERYONE, 200, {}),
    "script_library": ("GET", False, EVERYONE, 200, {}),
    "audit_log": ("GET", False, {"admin", "auditor"}, 200, {}),
    "audit_export": ("GET", False, {"admin", "auditor"}, 200, {}),
    "audit_event": ("GET", False, {"admin", "auditor"}, 200, {}),
    "organization_api_tokens": ("GET", False, {"admin"}, 200, {}),
    "sso_settings": ("GET", False, {"admin"}, 200, {}),
    "second_factor_policy": ("GET", False, {"admin"}, 200, {}),
}
# Pages that belong to no organization: anyone signed in may use them.
SIGNED_IN = {
    "home": 302,
    "org_list": 200,
    "catalog": 200,
    "action_detail": 200,
    "api_tokens": 200,
    "security": 200,
    "totp_setup": 200,
}
# Served to anonymous visitors by design.
PUBLIC = {"login", "logout", "api_schema", "api_docs"}
# Single sign-on: anyone may start it; the callback signs in only whom the provider vouches for
# (tests/test_sso_sign_in.py).
PUBLIC |= {"sso_choose", "sso_login", "sso_callback"}
# Covered route by route in their own tests: the API, which answers to tokens only
# (tests/test_api_requests.py), and the revokes, which name a token (tests/test_api_tokens.py).
ELSEWHERE = {
    "api_catalog",
    "api_requests",
    "api_request",
    "api_request_cancel",
    "api_request_approve",
    "api_request_reject",
    "api_approval_settings",
    "api_audit_events",
    "api_token_revoke",
    "organization_api_token_revoke",
}
# What changes state on POST, and which role may: checked with a wrong role too.
POSTS = {
    "approval_settings": {"admin"},
    "script_library": {"operator"},
    "queue": {"admin"},
    "new_request": {"operator"},
    "sso_settings": {"admin"},
    "second_factor_policy": {"admin"},
}
# The e-mail decision links name a signed token for one admin: tests/test_email_decision.py
# covers every member of the cast, signed-out visitors and tampered links.
ELSEWHERE |= {"email_decision"}
# The second step of signing in serves whoever has just given a right password, and only them;
# each user's own second factors, changed on the Security page (tests/test_two_factor*.py,
# tests/e2e/test_passkeys.py: the ceremonies' JSON calls, another user's passkey).
PUBLIC |= {"sign_in_second_factor", "sign_in_passkey", "sign_in_passkey_options"}
ELSEWHERE |= {
    "totp_remove",
    "security_confirm",
    "recovery_codes",
    "passkey_register",
    "passkey_register_options",
    "passkey_remove",
    "step_up_passkey",
    "step_up_passkey_options",
}
# The Trend Vision One compatible calls answer to tokens only: tests/test_api_trend.py covers
# no token, revoked and expired ones, another organization's task and the roles.
ELSEWHERE |= {
    "trend_add_to_block_list",
    "trend_collect_file",
    "trend_disable_user_account",
    "trend_isolate_endpoint",
    "trend_quarantine_email",
    "trend_restore_connection",
    "trend_run_custom_script",
    "trend_task",
    "trend_terminate_process",
    "trend_unsupported",
}


def url_names(resolver=None, namespace="") -> set[str]:
    names = set()
    for pattern in (resolver or get_resolver()).url_patterns:
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            names |= url_names(pattern, inner)
        elif isinstance(pattern, URLPattern) and pattern.name:
            names.add(namespace + pattern.name)
    return names


def admin_pages() -> list[str]:
    """The Django admin's pages that take no argument: its index and every model's lists."""
    pages = []
    for name in sorted(n for n in url_names() if n.startswith("admin:")):
        try:
            pages.append(reverse(name))
        except NoReverseMatch:
            continue  # pages about one object: the same staff check guards them
    return pages


def test_every_url_is_classified():
    known = set(MATRIX) | set(SIGNED_IN) | PUBLIC | ELSEWHERE
    # Django's admin is for platform (staff) admins only: checked page by page below.
    unclassified = {name for name in url_names() if not name.startswith("admin:")} - known
    assert not unclassified, f"Classify these URLs in the access matrix: {sorted(unclassified)}"
    assert not known - url_names(), "The matrix names URLs that no longer exist"
    assert len(admin_pages()) > 10


@pytest.mark.parametrize("who", CAST)
def test_the_django_admin_lets_in_platform_admins_only(cast, client, who):
    from django.contrib.auth import get_user_model

    staff = get_user_model().objects.create_superuser("platform", "p@example.com", "x" * 16)
    for page in admin_pages():
        if page.endswith("/logout/"):
            continue
        login = reverse("admin:login")
        for visitor in (client, client_for(cast[who])):
            response = visitor.get(page)
            if page == login:
                assert response.status_code == 200
            else:
                assert response.status_code == 302, page
                assert response["Location"].startswith(login), page
        # Let in: a page, a redirect that is not to the sign-in, or a read-only model's "add".
        answer = client_for(staff).get(page)
        assert answer.status_code in {200, 302, 403}, page
        assert not answer.get("Location", "").startswith(login), page


@pytest.mark.parametrize(
    "name", sorted({n for n, spec in MATRIX.items() if spec[0] == "POST"} | set(POSTS))
)
def test_every_post_needs_a_csrf_token(cast, pending, csrf_client, name):
    allowed = POSTS.get(name) or MATRIX[name][2]
    csrf_client.force_login(cast[sorted(allowed)[0]])
    before = list(ActionRequest.objects.values_list("status", flat=True))
    events = AuditEvent.objects.exclude(verb__startswith="auth.").count()
    target = url_for(name, pending, pending.events.first().pk)
    response = csrf_client.post(target, MATRIX.get(name, ("", "", "", "", {}))[4])
    assert response.status_code == 403
    assert list(ActionRequest.objects.values_list("status", flat=True)) == before
    assert AuditEvent.objects.exclude(verb__startswith="auth.").count() == events


def url_for(name: str, request: ActionRequest, event_pk: int) -> str:
    if name == "new_request":
        return reverse(name, args=["acme", "isolate_endpoint"])
    if name == "audit_event":
        return reverse(name, args=["acme", event_pk])
    if MATRIX[name][1]:
        return reverse(name, args=["acme", request.uuid])
    return reverse(name, args=["acme"])


@pytest.fixture
def pending(acme, operator):
    return submit(acme, operator)


@pytest.mark.parametrize("name", sorted(MATRIX))
@pytest.mark.parametrize("who", CAST)
def test_each_role_gets_what_it_may(cast, pending, name, who):
    method, _, allowed, success, data = MATRIX[name]
    target = url_for(name, pending, pending.events.first().pk)
    client = client_for(cast[who])
    response = client.post(target, data) if method == "POST" else client.get(target)
    if who == "outsider":
        assert response.status_code == 404
    elif who in allowed:
        assert response.status_code == success
    else:
        assert response.status_code == 403


@pytest.mark.parametrize("name", sorted(MATRIX))
def test_anonymous_is_sent_to_sign_in(client, pending, name):
    method = MATRIX[name][0]
    target = url_for(name, pending, pending.events.first().pk)
    response = client.post(target) if method == "POST" else client.get(target)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("name", sorted(SIGNED_IN))
def test_pages_outside_organizations_need_only_a_sign_in(client, operator, name):
    target = reverse(name, args=["isolate_endpoint"] if name == "action_detail" else [])
    assert client.get(target)["Location"].startswith(reverse("login"))
    assert client_for(operator).get(target).status_code == SIGNED_IN[name]


def state_of_requests_and_log() -> tuple[list, int]:
    statuses = list(ActionRequest.objects.order_by("pk").values_list("pk", "status"))
    return statuses, AuditEvent.objects.exclude(verb__startswith="auth.").count()


@pytest.mark.parametrize(
    "name,who",
    [(n, who) for n in sorted(POSTS) for who in CAST if who == "outsider" or who not in POSTS[n]],
)
def test_changes_are_refused_to_the_wrong_role(cast, pending, name, who):
    before = state_of_requests_and_log()
    target = url_for(name, pending, pending.events.first().pk)
    response = client_for(cast[who]).post(target, {})
    assert response.status_code == (404 if who == "outsider" else 403)
    assert state_of_requests_and_log() == before


# What an empty POST by the role that may gets: the form again with its errors, or the queue.
EMPTY_POST_ANSWER = {
    "approval_settings": 200,
    "script_library": 200,
    "queue": 302,
    "new_request": 200,
    "sso_settings": 200,
    "second_factor_policy": 400,
}


def test_every_post_has_an_answer_for_an_empty_form():
    assert set(EMPTY_POST_ANSWER) == set(POSTS)


@pytest.mark.parametrize("name,who", [(n, who) for n in sorted(POSTS) for who in sorted(POSTS[n])])
def test_the_right_role_gets_past_the_role_check_and_an_empty_form_changes_nothing(
    cast, pending, name, who
):
    before = state_of_requests_and_log()
    target = url_for(name, pending, pending.events.first().pk)
    response = client_for(cast[who]).post(target, {})
    assert response.status_code == EMPTY_POST_ANSWER[name]
    assert state_of_requests_and_log() == before


@pytest.mark.parametrize("name", sorted(n for n, spec in MATRIX.items() if spec[0] == "POST"))
def test_actions_are_never_done_by_get(cast, pending, name):
    target = url_for(name, pending, pending.events.first().pk)
    for who in ("operator", "admin"):
        assert client_for(cast[who]).get(target).status_code == 405
    pending.refresh_from_db()
    assert pending.status == "pending"

"""Every URL of the project, for every kind of visitor.

The URL patterns come from the resolver, so a new page is covered the day it is added: a
pattern this table does not classify fails the test until someone says who may use it.
"""

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from approvals.models import ActionRequest

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
    "queue": ("GET", False, {"admin"}, 200, {}),
    "approval_settings": ("GET", False, EVERYONE, 200, {}),
    "script_library": ("GET", False, EVERYONE, 200, {}),
    "audit_log": ("GET", False, {"admin", "auditor"}, 200, {}),
    "audit_export": ("GET", False, {"admin", "auditor"}, 200, {}),
    "audit_event": ("GET", False, {"admin", "auditor"}, 200, {}),
}
# Pages that belong to no organization: anyone signed in may use them.
SIGNED_IN = {"home": 302, "org_list": 200, "catalog": 200, "action_detail": 200}
# Served to anonymous visitors by design.
PUBLIC = {"login", "logout"}
# What changes state on POST, and which role may: checked with a wrong role too.
POSTS = {
    "approval_settings": {"admin"},
    "script_library": {"operator"},
    "queue": {"admin"},
    "new_request": {"operator"},
}


def url_names(resolver=None, namespace="") -> set[str]:
    names = set()
    for pattern in (resolver or get_resolver()).url_patterns:
        if isinstance(pattern, URLResolver):
            if pattern.namespace == "admin":
                continue  # Django's own admin: staff only, tested in test_admin.py
            names |= url_names(pattern)
        elif isinstance(pattern, URLPattern) and pattern.name:
            names.add(pattern.name)
    return names


def test_every_url_is_classified():
    known = set(MATRIX) | set(SIGNED_IN) | PUBLIC
    unclassified = url_names() - known
    assert not unclassified, f"Classify these URLs in the access matrix: {sorted(unclassified)}"
    assert not known - url_names(), "The matrix names URLs that no longer exist"


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


@pytest.mark.parametrize("name", sorted(POSTS))
@pytest.mark.parametrize("who", CAST)
def test_changes_are_refused_to_the_wrong_role(cast, pending, name, who):
    if who != "outsider" and who in POSTS[name]:
        return
    target = url_for(name, pending, pending.events.first().pk)
    response = client_for(cast[who]).post(target, {})
    assert response.status_code == (404 if who == "outsider" else 403)


@pytest.mark.parametrize("name", sorted(n for n, spec in MATRIX.items() if spec[0] == "POST"))
def test_actions_are_never_done_by_get(cast, pending, name):
    target = url_for(name, pending, pending.events.first().pk)
    for who in ("operator", "admin"):
        assert client_for(cast[who]).get(target).status_code == 405
    pending.refresh_from_db()
    assert pending.status == "pending"

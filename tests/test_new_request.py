"""Submitting a request through its form: /orgs/<slug>/requests/new/<key>/."""

import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from approvals.models import ActionRequest, RequestStatus
from audit.models import AuditEvent

from .approvals_helpers import turn_on_auto_approval
from .conftest import client_for

pytestmark = pytest.mark.django_db

AUTO_APPROVAL_SENTENCE = "Auto-approval must be enabled in order to use this response action."
RULE = b'rule webshell { strings: $a = "eval(" ascii condition: $a }'


def new(key, slug="acme"):
    return reverse("new_request", args=[slug, key])


def post(client, key, data, **extra):
    return client.post(new(key), {"submission_token": str(uuid.uuid4()), **data}, **extra)


@pytest.mark.parametrize(
    "who,status", [("operator", 200), ("admin", 403), ("auditor", 403), ("outsider", 404)]
)
def test_only_operators_get_the_form(cast, who, status):
    assert client_for(cast[who]).get(new("isolate_endpoint")).status_code == status


def test_unknown_action_is_a_404(operator):
    assert client_for(operator).get(new("no_such_action")).status_code == 404


def test_the_form_says_how_the_request_will_be_decided(operator):
    html = client_for(operator).get(new("isolate_endpoint")).content.decode()
    assert "Needs an admin&#x27;s approval" in html or "Needs an admin's approval" in html
    assert 'name="endpoints"' in html and 'name="submission_token"' in html


def test_isolate_endpoint_waits_in_the_queue(operator, admin):
    client = client_for(operator)
    response = post(
        client,
        "isolate_endpoint",
        {"endpoints": "web-01.acme.test\nWEB-01.acme.test\n10.0.0.5", "description": "C2 beacon"},
        follow=True,
    )
    request = ActionRequest.objects.get()
    assert response.redirect_chain[-1][0] == reverse("request_detail", args=["acme", request.uuid])
    assert request.status == RequestStatus.PENDING
    assert request.parameters == {
        "endpoints": ["web-01.acme.test", "10.0.0.5"],
        "description": "C2 beacon",
    }
    assert [t.value for t in request.targets.all()] == ["web-01.acme.test", "10.0.0.5"]
    queue = client_for(admin).get(reverse("queue", args=["acme"]))
    assert [r.pk for r in queue.context["page"].object_list] == [request.pk]


def test_with_auto_approval_on_it_is_approved_and_queued_at_once(acme, operator):
    turn_on_auto_approval(acme)
    post(client_for(operator), "isolate_endpoint", {"endpoints": "web-01", "description": "x"})
    created = ActionRequest.objects.get()
    assert (created.status, created.approval_mode) == (RequestStatus.QUEUED, "auto")


def test_osquery_with_auto_approval_off_is_refused_on_the_form(operator):
    response = post(
        client_for(operator),
        "run_osquery",
        {"endpoints": "web-01", "query": "SELECT pid, name FROM processes;"},
    )
    assert response.status_code == 200
    assert AUTO_APPROVAL_SENTENCE in response.content.decode()
    assert not ActionRequest.objects.exists()
    assert not AuditEvent.objects.exclude(verb__startswith="auth.").exists()


def test_a_bad_sha1_is_named_and_the_other_input_kept(operator):
    response = post(
        client_for(operator),
        "terminate_process",
        {"endpoints": "web-07.acme.test", "sha1": "abc", "file_name": "evil.exe"},
    )
    html = response.content.decode()
    assert "is not a SHA-1 hash: expected 40 hexadecimal characters." in html
    assert 'value="web-07.acme.test"' in html
    assert 'value="evil.exe"' in html
    assert not ActionRequest.objects.exists()


def test_a_double_submit_creates_one_request(operator):
    client = client_for(operator)
    data = {
        "submission_token": str(uuid.uuid4()),
        "endpoints": "web-01",
        "description": "Double click",
    }
    first = client.post(new("isolate_endpoint"), data)
    second = client.post(new("isolate_endpoint"), data)
    assert ActionRequest.objects.count() == 1
    assert first["Location"] == second["Location"]


def test_a_yara_rule_file_is_uploaded_and_stored(acme, operator):
    turn_on_auto_approval(acme)
    response = post(
        client_for(operator),
        "run_yara_rules",
        {
            "endpoints": "web-01",
            "rule_file": SimpleUploadedFile("webshell.yar", RULE),
            "target_path": "C:\\inetpub\\wwwroot",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    stored = ActionRequest.objects.get().parameters["rule_file"]
    assert stored["name"] == "webshell.yar"
    assert stored["source"] == RULE.decode()


def test_markup_in_a_description_is_shown_as_text(operator):
    client = client_for(operator)
    post(
        client,
        "isolate_endpoint",
        {"endpoints": "web-01", "description": '<script>alert(1)</script>"><img onerror=x>'},
    )
    request = ActionRequest.objects.get()
    html = client.get(reverse("request_detail", args=["acme", request.uuid])).content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img onerror" not in html


def test_submitting_needs_a_csrf_token(csrf_client, operator):
    csrf_client.force_login(operator)
    response = post(csrf_client, "isolate_endpoint", {"endpoints": "web-01", "description": "x"})
    assert response.status_code == 403
    assert not ActionRequest.objects.exists()


def test_the_chooser_lists_every_action_with_its_expected_approval(operator):
    response = client_for(operator).get(reverse("request_chooser", args=["acme"]))
    groups = response.context["groups"]
    assert [len(group["actions"]) for group in groups] == [4, 9, 7]
    html = response.content.decode()
    assert html.count("Auto-approval must be enabled") == 3
    assert new("isolate_endpoint") in html

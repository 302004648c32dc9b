"""Audit events in words: the audit log, a request's timeline and the dashboard say what
happened in a sentence, with the machine verb and the action key as secondary text."""

import importlib.util
import re
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from actions.models import ResponseAction
from approvals import services
from approvals.execution import steps as execution
from audit.chain import VERBS, record
from audit.context import AuditContext
from audit.describe import SENTENCES, describe, in_words
from audit.models import AuditEvent, Source

from .approvals_helpers import submit
from .conftest import client_for

pytestmark = pytest.mark.django_db

PROJECT = Path(__file__).parents[1]
APPS = ("responseportal", "actions", "audit", "accounts", "approvals", "api", "sso")
TWO = ["web-01.acme.test", "fail-web-02.acme.test"]


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def verbs_in_the_code() -> set[str]:
    """Every quoted `namespace.word` in the apps' code whose namespace is one of the verbs'."""
    namespaces = {verb.split(".")[0] for verb in [*VERBS, *SENTENCES]}
    found = set()
    for app in APPS:
        for path in (PROJECT / app).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            for namespace, word in re.findall(r'"([a-z_]+)\.([a-z_]+)"', path.read_text()):
                name = f"{namespace}.{word}"
                if namespace in namespaces and not _is_module(name):
                    found.add(name)
    return found


def test_every_verb_the_code_writes_has_its_sentence():
    written = verbs_in_the_code()
    assert {"request.approved", "execution.succeeded", "auth.signed_in"} <= written
    missing = sorted((written | set(VERBS)) - SENTENCES.keys())
    assert missing == [], f"Give these verbs a sentence in audit/describe.py: {missing}"


def sentences_of(action_request) -> dict[str, str]:
    lines = in_words(action_request.events.order_by("sequence"))
    return {line.event.verb: line.sentence for line in lines}


def test_a_request_reads_from_submission_to_its_partial_success(acme, operator, admin, settings):
    settings.SIMULATED_EXECUTOR_DELAY = 0
    action_request = submit(acme, operator, endpoints=TWO)
    services.approve_request(action_request.pk, actor=admin)
    execution.queue_request(action_request.pk)
    job = execution.start_execution(action_request.pk)
    for target in job.targets:
        execution.finish_target(target.id, succeeded=not target.value.startswith("fail-"))
    execution.finish_execution(action_request.pk)

    assert sentences_of(action_request) == {
        "request.submitted": "operator requested Isolate Endpoint on 2 endpoints",
        "request.approved": "acme-admin approved Isolate Endpoint on 2 endpoints",
        "execution.queued": "Isolate Endpoint on 2 endpoints was queued to run",
        "execution.started": "Isolate Endpoint on 2 endpoints started running",
        "execution.partially_succeeded": "Isolate Endpoint succeeded on 1 of 2 endpoints",
    }


def test_one_target_is_named(acme, operator, admin):
    action_request = submit(acme, operator, endpoints=["db-03.acme.test"])
    services.reject_request(action_request.pk, actor=admin, reason="A lab machine")
    assert sentences_of(action_request)["request.rejected"] == (
        "acme-admin rejected Isolate Endpoint on db-03.acme.test"
    )


def test_other_kinds_of_targets_are_named_by_their_kind(acme, operator):
    objects = ["sha1:" + "a" * 40, "domain:evil.test"]
    action_request = services.submit_request(
        acme,
        ResponseAction.objects.get(key="add_to_block_list"),
        actor=operator,
        parameters={"objects": objects, "description": "Phishing"},
        targets=[services.Target("object", value) for value in objects],
        endpoints=[],
    )
    assert sentences_of(action_request)["request.submitted"] == (
        "operator requested Add Objects to Block List on 2 objects"
    )


def test_settings_sign_ins_and_exports_read_as_sentences(acme, admin):
    changed = record(
        acme,
        "settings.changed",
        actor=admin,
        role="admin",
        data={
            "pending_lifetime_hours": {"before": 72, "after": 48},
            "auto_approval_enabled": {"before": False, "after": True},
        },
    )
    failed = record(acme, "auth.sign_in_failed", actor_username="jdoe", data={"username": "jdoe"})
    exported = record(acme, "audit.exported", actor=admin, role="admin", data={"filters": {}})
    assert describe(changed) == (
        "acme-admin changed the approval settings: automatic approval, how long requests wait"
    )
    assert describe(failed) == "A sign-in as jdoe failed"
    assert describe(exported) == "acme-admin exported the audit log as CSV"


def test_other_settings_and_memberships_read_as_sentences(acme, admin):
    sso = record(
        acme,
        "settings.changed",
        actor=admin,
        data={"settings": "single sign-on", "issuer": {"before": "", "after": "https://id.test"}},
    )
    joined = record(
        acme,
        "membership.created",
        actor=admin,
        data={
            "user": "jdoe",
            "role": {"before": None, "after": "operator"},
            "by": "identity provider groups",
        },
    )
    assert describe(sso) == "acme-admin changed the single sign-on settings: issuer"
    assert describe(joined) == (
        "jdoe joined the organization as operator, by the identity provider groups"
    )


def test_a_verb_without_a_sentence_still_reads(acme):
    event = record(acme, "future.thing_done")
    assert describe(event) == "The system: future thing done"


def test_the_audit_log_shows_sentences_with_the_verb_and_action_key(acme, operator, admin):
    action_request = submit(acme, operator, endpoints=TWO)
    services.approve_request(action_request.pk, actor=admin)
    page = client_for(admin).get(reverse("audit_log", args=["acme"])).content.decode()
    assert "acme-admin approved Isolate Endpoint on 2 endpoints" in page
    assert "<code>request.approved</code> · <code>isolate_endpoint</code>" in page


def test_the_event_page_says_what_happened(acme, operator, admin):
    action_request = submit(acme, operator, endpoints=TWO)
    event = AuditEvent.objects.get(request=action_request, verb="request.submitted")
    page = client_for(admin).get(reverse("audit_event", args=["acme", event.pk])).content.decode()
    assert '<h1 class="h3">operator requested Isolate Endpoint on 2 endpoints</h1>' in page


def test_the_timeline_and_the_dashboard_read_in_words(acme, operator, admin):
    action_request = submit(acme, operator, endpoints=["db-03.acme.test"])
    services.reject_request(action_request.pk, actor=admin, reason="A lab machine")
    client = client_for(admin)
    detail = client.get(reverse("request_detail", args=["acme", action_request.uuid]))
    assert "<strong>acme-admin rejected Isolate Endpoint on db-03.acme.test</strong>" in (
        detail.content.decode()
    )
    dashboard = client.get(reverse("org_dashboard", args=["acme"])).content.decode()
    assert "<strong>operator requested Isolate Endpoint on db-03.acme.test</strong>" in dashboard
    assert "<code>request.rejected</code> · <code>isolate_endpoint</code>" in dashboard


def test_a_name_someone_typed_is_shown_as_text(acme, admin):
    tried = '<script>alert("x")</script>'
    record(
        acme,
        "auth.sign_in_failed",
        actor_username=tried,
        data={"username": tried},
        context=AuditContext(Source.WEB, "192.0.2.7", "curl"),
    )
    page = client_for(admin).get(reverse("audit_log", args=["acme"])).content.decode()
    assert "A sign-in as &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; failed" in page
    assert tried not in page


def test_a_page_of_fifty_requests_reads_their_targets_in_one_query(
    acme, operator, admin, django_assert_max_num_queries
):
    client = client_for(admin)
    submit(acme, operator)
    with CaptureQueriesContext(connection) as one:
        client.get(reverse("audit_log", args=["acme"]))
    for n in range(49):
        submit(acme, operator, endpoints=[f"ws-{n}.acme.test", f"ws-{n + 100}.acme.test"])
    with django_assert_max_num_queries(len(one)):
        page = client.get(reverse("audit_log", args=["acme"])).content.decode()
    assert page.count("operator requested Isolate Endpoint on 2 endpoints") == 49

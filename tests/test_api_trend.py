"""The Trend Vision One v3.0 compatible calls through the test client: the 207 answer per item,
the tasks and their statuses, hostile bodies, and the access matrix of the /v3.0 routes."""

import json
import re
import uuid
from datetime import UTC, timedelta

import pytest
from django.core.cache import caches
from django.test import Client
from django.utils import timezone

from actions.models import ResponseAction
from api.tokens import create_token, revoke_token
from api.trend import CALLS
from approvals import services
from approvals.models import ActionRequest, RequestStatus
from audit.models import AuditEvent

from .approvals_helpers import submit, turn_on_auto_approval

ISOLATE = "/v3.0/response/endpoints/isolate"
GUID = "5a4f2d3e-0b1c-4d2e-9f80-1a2b3c4d5e6f"
SHA1 = "a" * 40


@pytest.fixture(autouse=True)
def _fresh_rate_counts():
    caches["default"].clear()


class Trend:
    """A client that speaks as pytmv1 does: bearer token, JSON arrays."""

    def __init__(self, secret: str | None, client: Client | None = None):
        self.client = client or Client()
        self.headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}"} if secret else {}

    def post(self, path, body, content_type="application/json"):
        data = body if isinstance(body, str | bytes) else json.dumps(body)
        return self.client.post(path, data, content_type=content_type, **self.headers)

    def get(self, path):
        return self.client.get(path, **self.headers)


def trend_for(user, organization, name="SOAR playbook"):
    return Trend(create_token(user, organization, name=name)[1])


def task_path(entry) -> str:
    (header,) = entry["headers"]
    assert header["name"] == "Operation-Location"
    assert header["value"].startswith("http://testserver/v3.0/response/tasks/")
    return header["value"].removeprefix("http://testserver")


def error_of(response) -> dict:
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return body["error"]


# Submitting


def test_two_endpoints_become_one_pending_request_and_two_tasks(operator, acme):
    response = trend_for(operator, acme).post(
        ISOLATE,
        [
            {"endpointName": "web-01.acme.test", "description": "C2 beacon"},
            {"endpointName": "WEB-02.acme.test", "description": "C2 beacon"},
        ],
    )
    assert response.status_code == 207
    assert response["Content-Type"] == "application/json"
    entries = response.json()
    assert [e["status"] for e in entries] == [202, 202]
    action_request = ActionRequest.objects.get()
    assert action_request.status == RequestStatus.PENDING
    assert action_request.parameters["description"] == "C2 beacon"
    assert [t.value for t in action_request.targets.all()] == [
        "web-01.acme.test",
        "web-02.acme.test",
    ]
    assert [task_path(e) for e in entries] == [
        f"/v3.0/response/tasks/{action_request.uuid}-0",
        f"/v3.0/response/tasks/{action_request.uuid}-1",
    ]
    event = AuditEvent.objects.get(verb="request.submitted")
    assert (event.source, event.data["api_token"]) == ("api", "SOAR playbook")


def test_items_with_different_descriptions_make_separate_requests(operator, acme):
    response = trend_for(operator, acme).post(
        ISOLATE,
        [
            {"endpointName": "web-01.acme.test", "description": "one"},
            {"endpointName": "web-02.acme.test", "description": "two"},
            {"endpointName": "web-03.acme.test", "description": "one"},
        ],
    )
    assert [e["status"] for e in response.json()] == [202, 202, 202]
    by_description = {
        r.parameters["description"]: [t.value for t in r.targets.all()]
        for r in ActionRequest.objects.all()
    }
    assert by_description == {
        "one": ["web-01.acme.test", "web-03.acme.test"],
        "two": ["web-02.acme.test"],
    }


def test_mixed_items_are_answered_in_order_and_only_valid_ones_become_tasks(operator, acme):
    response = trend_for(operator, acme).post(
        ISOLATE,
        [
            {"endpointName": "web-01.acme.test", "description": "C2"},
            {"endpointName": "not a host!", "description": "C2"},
            "web-03.acme.test",
            {"agentGuid": GUID, "description": "C2"},
            {"endpointName": "web-04.acme.test"},
            {"endpointName": "web-01.acme.test", "description": "C2"},
        ],
    )
    entries = response.json()
    assert [e["status"] for e in entries] == [202, 400, 400, 202, 400, 400]
    messages = [e["body"]["error"]["message"] for e in entries if e["status"] == 400]
    assert messages[0].startswith("endpointName: `not a host!` is not")
    assert "expected a JSON object" in messages[1]
    assert messages[2] == "description: This field is required."
    assert "already the target of item 1" in messages[3]
    assert all(e["body"]["error"]["code"] == "BadRequest" for e in entries if e["status"] == 400)
    (action_request,) = ActionRequest.objects.all()
    assert [t.value for t in action_request.targets.all()] == ["web-01.acme.test", GUID]


def test_every_item_refused_creates_nothing(operator, acme):
    response = trend_for(operator, acme).post(ISOLATE, [{"endpointName": "-bad-"}])
    assert response.status_code == 207
    assert response.json()[0]["status"] == 400
    assert not ActionRequest.objects.exists()


def test_the_decision_rule_refuses_items_with_its_sentence(operator, acme):
    ResponseAction.objects.filter(key="isolate_endpoint").update(needs_auto_approval=True)
    response = trend_for(operator, acme).post(
        ISOLATE, [{"endpointName": "web-01.acme.test", "description": "C2"}]
    )
    (entry,) = response.json()
    assert entry["status"] == 400
    assert entry["body"]["error"] == {
        "code": "ActionNotAllowed",
        "message": "Auto-approval must be enabled in order to use this response action.",
    }
    assert not ActionRequest.objects.exists()


# Hostile bodies and inputs


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"endpointName": "web-01.acme.test"}, "JSON dict: expected a JSON array"),
        ('"web-01"', "JSON str: expected a JSON array"),
        ("[{", "not JSON"),
        (b"\xff\xfe[]", "not JSON"),
        ("[]", "empty array"),
        ([{"endpointName": f"h{i}.acme.test", "description": "x"} for i in range(101)], "101"),
        ("[" * 100_000 + "]" * 100_000, "not JSON"),
    ],
)
def test_a_body_that_is_not_an_array_of_items_is_a_json_400(operator, acme, body, fragment):
    response = trend_for(operator, acme).post(ISOLATE, body)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "BadRequest" and fragment in error["message"]
    assert not ActionRequest.objects.exists()


def test_a_huge_body_is_a_json_413(operator, acme):
    item = {"endpointName": "web-01.acme.test", "description": "x" * 4_000}
    response = trend_for(operator, acme).post(ISOLATE, [item] * 300)
    assert response.status_code == 413
    assert error_of(response)["code"] == "RequestEntityTooLarge"
    assert not ActionRequest.objects.exists()


def test_another_content_type_is_a_json_415(operator, acme):
    response = trend_for(operator, acme).post(
        ISOLATE, '[{"endpointName": "web-01"}]', content_type="text/plain"
    )
    assert response.status_code == 415
    assert "expected application/json" in error_of(response)["message"]


@pytest.mark.parametrize(
    ("item", "fragment"),
    [
        ({"endpointName": "web-01\x00.acme.test"}, "Null characters are not allowed"),
        ({"endpointName": "web\u200b01.acme.test"}, "U+200B"),
        ({"endpointName": "web-01.acme.test\u202e"}, "U+202E"),
        ({"endpointName": "web-01.acme.test\nweb-02.acme.test"}, "line break"),
        ({"endpointName": "web-01.acme.test\u2028web-02.acme.test"}, "line break"),
        ({"endpointName": 42}, "expected a string"),
        ({"endpointName": ["web-01"]}, "expected a string"),
        ({}, "Give endpointName or agentGuid"),
        ({"endpointName": "web-01.acme.test", "agentGuid": "not-a-guid"}, "agentGuid: "),
        ({"endpointName": "w" * 6_000}, "at most 5000 characters"),
        ({"endpointName": "web-01.acme.test", "description": "C2\x00"}, "Null characters"),
        ({"endpointName": "web-01.acme.test", "description": "C2\u200b"}, "U+200B"),
    ],
)
def test_a_hostile_item_is_refused_and_creates_nothing(operator, acme, item, fragment):
    item = {"description": "C2", **item}
    response = trend_for(operator, acme).post(ISOLATE, [item])
    (entry,) = response.json()
    assert entry["status"] == 400
    assert fragment in entry["body"]["error"]["message"]
    assert not ActionRequest.objects.exists()


def test_a_double_submit_makes_two_requests_as_trend_does(operator, acme):
    trend = trend_for(operator, acme)
    body = [{"endpointName": "web-01.acme.test", "description": "C2"}]
    first, second = trend.post(ISOLATE, body).json(), trend.post(ISOLATE, body).json()
    assert task_path(first[0]) != task_path(second[0])
    assert ActionRequest.objects.count() == 2


# Tasks


def _task(trend, entry) -> dict:
    response = trend.get(task_path(entry))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    return response.json()


ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def test_a_task_reads_pending_then_succeeded_once_an_admin_approves(
    operator, admin, acme, django_capture_on_commit_callbacks
):
    trend = trend_for(operator, acme)
    entries = trend.post(
        ISOLATE,
        [{"endpointName": "web-01.acme.test", "description": "C2"}, {"agentGuid": GUID.upper()}],
    ).json()
    assert entries[1]["status"] == 400  # no description: the form requires one
    task = _task(trend, entries[0])
    action_request = ActionRequest.objects.get()
    assert task == {
        "id": f"{action_request.uuid}-0",
        "status": "pendingApproval",
        "action": "isolate",
        "createdDateTime": task["createdDateTime"],
        "lastActionDateTime": task["lastActionDateTime"],
        "description": "C2",
        "account": "operator",
        "agentGuid": "",
        "endpointName": "web-01.acme.test",
    }
    assert ISO_UTC.fullmatch(task["createdDateTime"])
    submitted = action_request.submitted_at.astimezone(UTC)
    assert task["createdDateTime"] == submitted.strftime("%Y-%m-%dT%H:%M:%SZ")
    with django_capture_on_commit_callbacks(execute=True):
        services.approve_request(action_request.pk, actor=admin)
    task = _task(trend, entries[0])
    assert task["status"] == "succeeded"
    assert ISO_UTC.fullmatch(task["lastActionDateTime"])
    assert task["lastActionDateTime"] >= task["createdDateTime"]


def test_an_agent_guid_target_reads_as_both_fields(operator, acme):
    trend = trend_for(operator, acme)
    (entry,) = trend.post(ISOLATE, [{"agentGuid": GUID.upper(), "description": "C2"}]).json()
    task = _task(trend, entry)
    assert (task["agentGuid"], task["endpointName"]) == (GUID, GUID)


def _made_through_the_api(operator, acme):
    trend = trend_for(operator, acme)
    (entry,) = trend.post(ISOLATE, [{"endpointName": "web-01.acme.test", "description": "C2"}])
    return trend, entry, ActionRequest.objects.get()


def test_an_expired_request_reads_rejected_with_an_error_saying_it_expired(operator, acme):
    trend = trend_for(operator, acme)
    (entry,) = trend.post(
        ISOLATE, [{"endpointName": "web-01.acme.test", "description": "C2"}]
    ).json()
    expired_at = (timezone.now() - timedelta(minutes=5)).astimezone(UTC)
    ActionRequest.objects.update(expires_at=expired_at)
    task = _task(trend, entry)
    assert task["status"] == "rejected"
    assert task["error"]["code"] == "TaskExpired"
    assert "expired" in task["error"]["message"]
    assert expired_at.strftime("%Y-%m-%dT%H:%M:%SZ") in task["error"]["message"]
    assert isinstance(task["error"]["number"], int)


def test_rejected_and_cancelled_requests_read_as_trend_names_them(operator, admin, acme):
    trend = trend_for(operator, acme)
    body = [{"endpointName": "web-01.acme.test", "description": "C2"}]
    (rejected,) = trend.post(ISOLATE, body).json()
    (cancelled,) = trend.post(ISOLATE, body).json()
    first, second = ActionRequest.objects.order_by("id")
    services.reject_request(first.pk, actor=admin, reason="Known admin tool")
    services.cancel_request(second.pk, actor=operator)
    task = _task(trend, rejected)
    assert task["status"] == "rejected"
    assert task["error"]["message"] == "Rejected by acme-admin: Known admin tool"
    assert _task(trend, cancelled)["status"] == "canceled"


def test_an_auto_approved_request_runs_at_once(operator, acme, django_capture_on_commit_callbacks):
    turn_on_auto_approval(acme)
    trend = trend_for(operator, acme)
    with django_capture_on_commit_callbacks(execute=True):
        (entry,) = trend.post(
            ISOLATE, [{"endpointName": "web-01.acme.test", "description": "C2"}]
        ).json()
    assert _task(trend, entry)["status"] == "succeeded"


def test_a_request_made_on_the_pages_is_a_task_too(operator, acme):
    action_request = submit(acme, operator)
    trend = trend_for(operator, acme)
    response = trend.get(f"/v3.0/response/tasks/{action_request.uuid}-0")
    assert response.json()["status"] == "pendingApproval"


@pytest.mark.parametrize(
    "task_id",
    ["nothing", "00000000-0000-0000-0000-000000000000-0", "{uuid}-7", "{uuid}", "{uuid}-0-0"],
)
def test_an_unknown_task_is_a_json_404(operator, acme, task_id):
    action_request = submit(acme, operator)
    response = trend_for(operator, acme).get(
        "/v3.0/response/tasks/" + task_id.format(uuid=action_request.uuid)
    )
    assert response.status_code == 404
    assert error_of(response)["code"] == "NotFound"


def test_another_organizations_task_is_a_404(operator, acme, outsider, globex):
    action_request = submit(acme, operator)
    response = trend_for(outsider, globex).get(f"/v3.0/response/tasks/{action_request.uuid}-0")
    assert response.status_code == 404
    assert error_of(response)["code"] == "NotFound"


def test_a_request_of_another_action_is_no_task(operator, acme):
    action_request = submit(acme, operator, key="scan_for_malware", parameters={"endpoints": ["a"]})
    response = trend_for(operator, acme).get(f"/v3.0/response/tasks/{action_request.uuid}-0")
    assert response.status_code == 404


# Paths


@pytest.mark.parametrize(
    "path",
    [
        "/v3.0/response/endpoints/isolate/",
        "/v3.0/response/endpoints/collectEvidence",
        "/v3.0/response/emails/delete",
        "/v3.0/",
        "/v3.0",
        "/v3.0/response/tasks/abc/",
    ],
)
def test_an_unsupported_path_is_a_json_400_naming_the_supported_calls(operator, acme, path):
    response = trend_for(operator, acme).post(path, [{"endpointName": "web-01"}])
    assert response.status_code == 400  # never a redirect
    message = error_of(response)["message"]
    assert "is not a call this portal supports" in message
    assert "POST /v3.0/response/endpoints/isolate;" in message
    assert "GET /v3.0/response/tasks/{taskId}" in message
    assert not ActionRequest.objects.exists()


def test_a_call_whose_action_left_the_catalog_is_unsupported(operator, acme):
    ResponseAction.objects.filter(key="isolate_endpoint").update(active=False)
    response = trend_for(operator, acme).post(ISOLATE, [{"endpointName": "web-01"}])
    assert response.status_code == 400
    message = error_of(response)["message"]
    assert "endpoints/isolate;" not in message and "endpoints/restore" in message


def test_a_wrong_method_is_a_json_405(operator, acme):
    response = trend_for(operator, acme).get(ISOLATE)
    assert response.status_code == 405
    assert error_of(response)["code"] == "MethodNotAllowed"


def test_no_csrf_token_is_needed(operator, acme, csrf_client):
    trend = Trend(create_token(operator, acme, name="SOAR")[1], client=csrf_client)
    response = trend.post(ISOLATE, [{"endpointName": "web-01.acme.test", "description": "C2"}])
    assert response.status_code == 207


def test_the_v3_routes_stay_out_of_the_api_v1_schema(operator, acme):
    schema = Trend(None).get("/api/v1/schema/?format=json").content.decode()
    assert "/api/v1/" in schema and "v3.0" not in schema


# Access


def test_anonymous_gets_401(acme, operator):
    action_request = submit(acme, operator)
    for response in (
        Trend(None).post(ISOLATE, [{"endpointName": "web-01"}]),
        Trend(None).get(f"/v3.0/response/tasks/{action_request.uuid}-0"),
        Trend("rp_" + "x" * 43).get(f"/v3.0/response/tasks/{action_request.uuid}-0"),
        Trend("not-a-token").post(ISOLATE, [{"endpointName": "web-01"}]),
    ):
        assert response.status_code == 401
        assert error_of(response)["code"] == "Unauthorized"
        assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert ActionRequest.objects.count() == 1


def test_revoked_and_expired_tokens_get_401(operator, acme):
    revoked, revoked_secret = create_token(operator, acme, name="old")
    revoke_token(revoked.pk, actor=operator)
    expired, expired_secret = create_token(operator, acme, name="expired")
    type(expired).objects.filter(pk=expired.pk).update(expires_at=timezone.now())
    for secret, fragment in ((revoked_secret, "was revoked"), (expired_secret, "expired")):
        response = Trend(secret).post(ISOLATE, [{"endpointName": "web-01", "description": "C2"}])
        assert response.status_code == 401
        assert fragment in error_of(response)["message"]
    assert not ActionRequest.objects.exists()


def test_only_operators_submit(admin, auditor, acme):
    for user in (admin, auditor):
        response = trend_for(user, acme).post(
            ISOLATE, [{"endpointName": "web-01.acme.test", "description": "C2"}]
        )
        assert response.status_code == 403
        assert error_of(response)["code"] == "AccessDenied"
    assert not ActionRequest.objects.exists()


def test_every_member_reads_tasks(operator, admin, auditor, acme):
    action_request = submit(acme, operator)
    for user in (admin, auditor):
        response = trend_for(user, acme).get(f"/v3.0/response/tasks/{action_request.uuid}-0")
        assert response.status_code == 200


def test_requests_per_token_are_limited_with_retry_after(operator, acme, settings):
    settings.API_RATE_LIMIT = "2/min"
    trend = trend_for(operator, acme)
    path = f"/v3.0/response/tasks/{uuid.uuid4()}-0"
    assert [trend.get(path).status_code for _ in range(2)] == [404, 404]
    response = trend.get(path)
    assert response.status_code == 429
    assert error_of(response)["code"] == "TooManyRequests"
    assert int(response["Retry-After"]) >= 1


@pytest.mark.parametrize("call", CALLS, ids=lambda call: call.path)
def test_the_access_matrix_of_every_call(call, operator, admin, auditor, acme):
    path = f"/v3.0/response/{call.path}"
    body = [{"endpointName": "web-01.acme.test", "description": "C2"}]
    revoked, revoked_secret = create_token(operator, acme, name="revoked")
    revoke_token(revoked.pk, actor=operator)
    expired, expired_secret = create_token(operator, acme, name="expired")
    type(expired).objects.filter(pk=expired.pk).update(expires_at=timezone.now())
    for secret in (None, revoked_secret, expired_secret):
        response = Trend(secret).post(path, body)
        assert response.status_code == 401, secret
        assert error_of(response)["code"] == "Unauthorized"
    for user in (admin, auditor):
        response = trend_for(user, acme).post(path, body)
        assert response.status_code == 403
        assert error_of(response)["code"] == "AccessDenied"
    assert trend_for(operator, acme).post(path, body).status_code == 207


def test_another_spelling_of_the_same_endpoint_is_a_duplicate(operator, acme):
    response = trend_for(operator, acme).post(
        ISOLATE,
        [
            {"endpointName": "web-01.acme.test", "description": "C2"},
            {"endpointName": "WEB-01.ACME.TEST.", "description": "C2"},
            {"agentGuid": GUID, "description": "C2"},
            {"agentGuid": GUID.upper(), "description": "C2"},
        ],
    )
    entries = response.json()
    assert [e["status"] for e in entries] == [202, 400, 202, 400]
    assert "already the target of item 1" in entries[1]["body"]["error"]["message"]
    assert "already the target of item 3" in entries[3]["body"]["error"]["message"]
    (action_request,) = ActionRequest.objects.all()
    assert [t.value for t in action_request.targets.all()] == ["web-01.acme.test", GUID]


@pytest.mark.parametrize(
    ("file_name", "fragment"),
    [
        ("collect\x00.ps1", "U+0000"),
        ("collect\u200b.ps1", "U+200B"),
        ("Collect.ps1", "is not in Acme Corporation's script library"),
        (None, "fileName: this field is required."),
    ],
)
def test_run_script_names_a_script_of_the_library(operator, acme, file_name, fragment):
    services.upload_script(
        acme, actor=operator, name="collect.ps1", language="powershell", content="Get-Process\n"
    )
    item = {"endpointName": "web-01.acme.test", "fileName": file_name}
    response = trend_for(operator, acme).post("/v3.0/response/endpoints/runScript", [item])
    (entry,) = response.json()
    assert entry["status"] == 400
    assert fragment in entry["body"]["error"]["message"]
    assert not ActionRequest.objects.exists()


def test_a_task_is_json_whatever_the_client_accepts(operator, acme):
    action_request = submit(acme, operator)
    response = trend_for(operator, acme).client.get(
        f"/v3.0/response/tasks/{action_request.uuid}-0",
        HTTP_ACCEPT="text/html",
        HTTP_AUTHORIZATION=trend_for(operator, acme).headers["HTTP_AUTHORIZATION"],
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json()["status"] == "pendingApproval"


VALID_ITEMS = {
    "endpoints/isolate": {"endpointName": "web-01.acme.test", "description": "C2"},
    "endpoints/restore": {"endpointName": "web-01.acme.test"},
    "endpoints/collectFile": {"endpointName": "web-01.acme.test", "filePath": "C:\\evil.exe"},
    "endpoints/terminateProcess": {
        "endpointName": "web-01.acme.test",
        "fileSha1": SHA1,
        "fileName": "evil.exe",
    },
    "endpoints/runScript": {
        "endpointName": "web-01.acme.test",
        "fileName": "collect.ps1",
        "parameter": "-All",
    },
    "suspiciousObjects": {"url": "https://evil.example/x", "description": "C2"},
    "emails/quarantine": {"mailBox": "ceo@acme.example", "messageId": "<1@mail.example>"},
    "domainAccounts/disable": {"accountName": "jdoe@acme.example", "description": "phished"},
}


@pytest.mark.parametrize("hidden", ["\x00", "\u200b", "\u202e"], ids=["NUL", "ZWSP", "RLO"])
@pytest.mark.parametrize("call_path", sorted(VALID_ITEMS))
def test_a_hidden_character_in_any_field_of_any_call_is_refused(
    operator, acme, call_path, hidden, django_capture_on_commit_callbacks
):
    assert {c.path for c in CALLS} == set(VALID_ITEMS)
    turn_on_auto_approval(acme)
    services.upload_script(
        acme, actor=operator, name="collect.ps1", language="powershell", content="Get-Process\n"
    )
    trend = trend_for(operator, acme)
    if call_path == "endpoints/restore":
        with django_capture_on_commit_callbacks(execute=True):
            trend.post(ISOLATE, [VALID_ITEMS["endpoints/isolate"]])
    valid = VALID_ITEMS[call_path]
    spoiled = [{**valid, name: value[:3] + hidden + value[3:]} for name, value in valid.items()]
    before = ActionRequest.objects.count()
    response = trend.post(f"/v3.0/response/{call_path}", [*spoiled, valid])
    assert response.status_code == 207
    entries = response.json()
    assert [e["status"] for e in entries] == [400] * len(spoiled) + [202]
    for entry, name in zip(entries, valid, strict=False):
        assert entry["body"]["error"]["message"].startswith(f"{name}: "), entry
    assert ActionRequest.objects.count() == before + 1
    task = _task(trend, entries[-1])
    assert task["action"] == next(c.trend_action for c in CALLS if c.path == call_path)

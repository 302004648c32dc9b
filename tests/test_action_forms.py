import hashlib
import json
import uuid
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from actions import catalog
from actions.models import ResponseAction
from approvals.forms import FORMS, ActionForm, form_for
from approvals.models import (
    ActionRequest,
    ApprovalMode,
    RequestStatus,
    RequestTarget,
    Script,
    ScriptLanguage,
    TargetStatus,
)
from approvals.services import Target
from approvals.state import has_active_remote_shell, isolated_endpoints

pytestmark = pytest.mark.django_db

RULES = b'rule evil_marker { strings: $a = "evil-marker" condition: $a }\n'
SHA1 = "a9993e364706816aba3e25717850c26c9cd0d89d"


TARGET_STATUS_OF = {
    RequestStatus.SUCCESSFUL: TargetStatus.SUCCESSFUL,
    RequestStatus.FAILED: TargetStatus.FAILED,
    RequestStatus.TERMINATED: TargetStatus.TERMINATED,
    RequestStatus.IN_PROGRESS: TargetStatus.IN_PROGRESS,
}


def make_request(
    organization,
    requester,
    key: str,
    endpoints: list[str],
    *,
    status=RequestStatus.SUCCESSFUL,
    submitted_at=None,
    finished_at=None,
    target_status=None,
    active_until=None,
    ended_at=None,
) -> ActionRequest:
    """A request as it stands after running; by default every target succeeded.

    A successful remote shell is active for the default 4 hours after it finished.
    """
    submitted_at = submitted_at or timezone.now()
    ran = status in {
        RequestStatus.SUCCESSFUL,
        RequestStatus.PARTIALLY_SUCCESSFUL,
        RequestStatus.FAILED,
        RequestStatus.TERMINATED,
    }
    finished_at = finished_at or (submitted_at if ran else None)
    if key == "start_remote_shell" and status == RequestStatus.SUCCESSFUL and not active_until:
        active_until = finished_at + timedelta(hours=4)
    request = ActionRequest.objects.create(
        organization=organization,
        action=ResponseAction.objects.get(key=key),
        requester=requester,
        approval_mode=ApprovalMode.MANUAL,
        status=status,
        submitted_at=submitted_at,
        decided_at=None if status == RequestStatus.PENDING else submitted_at,
        finished_at=finished_at,
        active_until=active_until,
        ended_at=ended_at,
    )
    target_status = target_status or TARGET_STATUS_OF.get(status, TargetStatus.WAITING)
    RequestTarget.objects.bulk_create(
        RequestTarget(
            request=request,
            position=position,
            kind="endpoint",
            value=endpoint,
            status=target_status,
            finished_at=finished_at if target_status != TargetStatus.WAITING else None,
        )
        for position, endpoint in enumerate(endpoints)
    )
    return request


def make_script(organization, uploaded_by, name="collect.ps1") -> Script:
    content = "Get-Process\n"
    return Script.objects.create(
        organization=organization,
        name=name,
        language=ScriptLanguage.POWERSHELL,
        content=content,
        sha256=hashlib.sha256(content.encode()).hexdigest(),
        size=len(content),
        uploaded_by=uploaded_by,
    )


def bind(key: str, organization, data: dict, files: dict | None = None) -> ActionForm:
    data = {"submission_token": str(uuid.uuid4()), **data}
    return form_for(key)(data, files, organization=organization)


def errors_of(form: ActionForm, field: str = "__all__") -> str:
    return " ".join(form.errors.get(field, []))


def rule_file(content: bytes = RULES, name: str = "evil.yar") -> dict:
    return {"rule_file": SimpleUploadedFile(name, content)}


# The registry


def test_there_is_one_form_per_catalog_action():
    assert set(FORMS) == set(catalog.BY_KEY)


@pytest.mark.parametrize("key", list(catalog.BY_KEY))
def test_each_form_has_the_catalog_parameters_labelled_by_the_catalog(key):
    form = form_for(key)(organization=None)
    parameters = catalog.BY_KEY[key].parameters

    # After the action's own fields, those every request form shares (token, break-glass).
    assert list(form.fields) == [parameter.name for parameter in parameters] + [
        "submission_token",
        "break_glass",
        "justification",
    ]
    for parameter in parameters:
        field = form.fields[parameter.name]
        assert (field.label, field.help_text, field.required) == (
            parameter.label,
            parameter.help,
            parameter.required,
        )
    assert form.helper.form_tag is False


def test_an_unknown_action_has_no_form():
    with pytest.raises(KeyError):
        form_for("format_hard_disk")


def test_each_unbound_form_gets_a_fresh_submission_token():
    first = form_for("isolate_endpoint")(organization=None)
    second = form_for("isolate_endpoint")(organization=None)

    token = first["submission_token"].value()
    assert uuid.UUID(token).version == 4
    assert token != second["submission_token"].value()
    assert f'type="hidden" name="submission_token" value="{token}"' in str(
        first["submission_token"]
    )


def test_a_bound_form_keeps_the_submitted_token(acme):
    token = uuid.uuid4()
    data = {"endpoints": "ws-042", "description": "x", "submission_token": str(token)}

    form = form_for("isolate_endpoint")(data, organization=acme)

    assert form.is_valid()
    assert form.cleaned_data["submission_token"] == token
    assert "submission_token" not in form.parameters()


def test_a_form_without_its_token_is_refused(acme):
    form = form_for("isolate_endpoint")(
        {"endpoints": "ws-042", "description": "x"}, organization=acme
    )

    assert not form.is_valid()
    assert "reload the page" in errors_of(form)


# A valid submission of each action, and what it gives the service


@pytest.fixture
def ready(acme, operator):
    """ws-042 is isolated and has an active remote shell; the library holds one script."""
    make_request(acme, operator, "isolate_endpoint", ["ws-042"])
    make_request(acme, operator, "start_remote_shell", ["ws-042"])
    return {"script": make_script(acme, operator)}


def valid_submissions(script: Script) -> dict[str, tuple[dict, dict | None, dict, list[Target]]]:
    """For each action: data, files, the expected parameters() and targets()."""
    objects = f"sha256:{'A' * 64}\nurl:https://example.com/x\nip:192.0.2.10\ndomain:Example.COM"
    return {
        "link_workbench_alert": (
            {
                "operation": "unlink",
                "alert_ids": "wb-12345-20261130-00001, WB-12345-20261130-00002\n"
                "WB-12345-20261130-00001",
                "incident_id": "IR-2026-42",
            },
            None,
            {
                "operation": "unlink",
                "alert_ids": ["WB-12345-20261130-00001", "WB-12345-20261130-00002"],
                "incident_id": "IR-2026-42",
            },
            [
                Target("alert", "WB-12345-20261130-00001"),
                Target("alert", "WB-12345-20261130-00002"),
            ],
        ),
        "add_suspicious_object_exception": (
            {"objects": objects, "description": "  Known good build server  "},
            None,
            {
                "objects": [
                    {"type": "sha256", "value": "a" * 64},
                    {"type": "url", "value": "https://example.com/x"},
                    {"type": "ip", "value": "192.0.2.10"},
                    {"type": "domain", "value": "example.com"},
                ],
                "description": "Known good build server",
            },
            [
                Target("object", f"sha256:{'a' * 64}"),
                Target("object", "url:https://example.com/x"),
                Target("object", "ip:192.0.2.10"),
                Target("object", "domain:example.com"),
            ],
        ),
        "add_detection_model_exception": (
            {
                "detection_model": "Encoded PowerShell Command",
                "scope": "corp\\svc-backup",
                "description": "The backup agent",
            },
            None,
            {
                "detection_model": "Encoded PowerShell Command",
                "scope": "CORP\\svc-backup",
                "description": "The backup agent",
            },
            [Target("account", "CORP\\svc-backup")],
        ),
        "dump_process_memory": (
            {"endpoints": "WS-042", "process": "4242"},
            None,
            {"endpoints": ["ws-042"], "process": 4242},
            [Target("endpoint", "ws-042")],
        ),
        "add_to_block_list": (
            {"objects": f"domain:evil.example\nip:2001:DB8::1\nsha1:{SHA1}", "description": "C2"},
            None,
            {
                "objects": [
                    {"type": "domain", "value": "evil.example"},
                    {"type": "ip", "value": "2001:db8::1"},
                    {"type": "sha1", "value": SHA1},
                ],
                "description": "C2",
            },
            [
                Target("object", "domain:evil.example"),
                Target("object", "ip:2001:db8::1"),
                Target("object", f"sha1:{SHA1}"),
            ],
        ),
        "collect_evidence": (
            {"endpoints": "ws-042\n10.0.0.5", "evidence_types": ["mft", "amcache"]},
            None,
            {"endpoints": ["ws-042", "10.0.0.5"], "evidence_types": ["amcache", "mft"]},
            [Target("endpoint", "ws-042"), Target("endpoint", "10.0.0.5")],
        ),
        "collect_file": (
            {"endpoints": "ws-042", "file_path": "C:\\Users\\Public\\evil.exe"},
            None,
            {"endpoints": ["ws-042"], "file_path": "C:\\Users\\Public\\evil.exe"},
            [Target("endpoint", "ws-042")],
        ),
        "disable_user_account": (
            {"account": "alice@Example.COM", "description": "Phished"},
            None,
            {"account": "alice@example.com", "description": "Phished"},
            [Target("account", "alice@example.com")],
        ),
        "isolate_endpoint": (
            {
                "endpoints": "WS-042\r\nws-042\r\n\r\n{6F9619FF-8B86-D011-B42D-00C04FC964FF}",
                "description": "Ransomware",
            },
            None,
            {
                "endpoints": ["ws-042", "6f9619ff-8b86-d011-b42d-00c04fc964ff"],
                "description": "Ransomware",
            },
            [
                Target("endpoint", "ws-042"),
                Target("endpoint", "6f9619ff-8b86-d011-b42d-00c04fc964ff"),
            ],
        ),
        "quarantine_email": (
            {"mailbox": "Bob@Example.COM", "message_id": " <abc123@mail.example.com> "},
            None,
            {"mailbox": "Bob@example.com", "message_id": "<abc123@mail.example.com>"},
            [Target("message", "Bob@example.com <abc123@mail.example.com>")],
        ),
        "restore_connection": (
            {"endpoints": "ws-042"},
            None,
            {"endpoints": ["ws-042"]},
            [Target("endpoint", "ws-042")],
        ),
        "scan_for_malware": (
            {"endpoints": "ws-042\nws-043"},
            None,
            {"endpoints": ["ws-042", "ws-043"]},
            [Target("endpoint", "ws-042"), Target("endpoint", "ws-043")],
        ),
        "terminate_process": (
            {"endpoints": "ws-042", "sha1": SHA1.upper(), "file_name": ""},
            None,
            {"endpoints": ["ws-042"], "sha1": SHA1},
            [Target("endpoint", "ws-042")],
        ),
        "collect_network_analysis_package": (
            {"appliance": "DDI-01.corp.example.com", "detection_id": "det_0042"},
            None,
            {"appliance": "ddi-01.corp.example.com", "detection_id": "det_0042"},
            [Target("appliance", "ddi-01.corp.example.com")],
        ),
        "deploy_tippingpoint_filter": (
            {"cve_ids": "cve-2024-3094, CVE-2021-44228", "sms_profile": "Default profile"},
            None,
            {"cve_ids": ["CVE-2024-3094", "CVE-2021-44228"], "sms_profile": "Default profile"},
            [Target("cve", "CVE-2024-3094"), Target("cve", "CVE-2021-44228")],
        ),
        "run_osquery": (
            {"endpoints": "ws-042", "query": "SELECT pid, name FROM processes WHERE pid = 4;"},
            None,
            {"endpoints": ["ws-042"], "query": "SELECT pid, name FROM processes WHERE pid = 4;"},
            [Target("endpoint", "ws-042")],
        ),
        "run_custom_script": (
            {"endpoints": "ws-042", "script": str(script.pk), "parameters": "-Path 'C:\\Temp'"},
            None,
            {
                "endpoints": ["ws-042"],
                "script": {
                    "id": script.pk,
                    "name": "collect.ps1",
                    "sha256": script.sha256,
                    "language": "powershell",
                },
                "parameters": "-Path 'C:\\Temp'",
            },
            [Target("endpoint", "ws-042")],
        ),
        "run_yara_rules": (
            {"endpoints": "ws-042", "process_name": "evil.exe", "target_path": ""},
            rule_file(),
            {
                "endpoints": ["ws-042"],
                "rule_file": {
                    "name": "evil.yar",
                    "sha256": hashlib.sha256(RULES).hexdigest(),
                    "size": len(RULES),
                    "source": RULES.decode(),
                },
                "process_name": "evil.exe",
            },
            [Target("endpoint", "ws-042")],
        ),
        "start_remote_shell": (
            {"endpoints": "ws-042", "reason": "Live triage of a beacon"},
            None,
            {"endpoints": ["ws-042"], "reason": "Live triage of a beacon"},
            [Target("endpoint", "ws-042")],
        ),
        "submit_sandbox": (
            {"urls": "https://evil.example/a\nhttps://evil.example/a\nhttp://203.0.113.7/p"},
            None,
            {"urls": ["https://evil.example/a", "http://203.0.113.7/p"]},
            [Target("url", "https://evil.example/a"), Target("url", "http://203.0.113.7/p")],
        ),
    }


@pytest.mark.parametrize("key", list(catalog.BY_KEY))
def test_a_valid_submission_gives_parameters_targets_and_endpoints(ready, acme, key):
    data, files, parameters, targets = valid_submissions(ready["script"])[key]

    form = bind(key, acme, data, files)

    assert form.is_valid(), form.errors
    assert form.parameters() == parameters
    assert json.loads(json.dumps(form.parameters())) == parameters
    assert form.targets() == targets
    assert form.endpoints() == [t.value for t in targets if t.kind == "endpoint"]
    assert form.summary()


def test_every_action_is_covered_by_a_valid_submission(ready):
    assert set(valid_submissions(ready["script"])) == set(catalog.BY_KEY)


def test_the_summary_holds_the_description_and_the_targets(acme):
    form = bind("isolate_endpoint", acme, {"endpoints": "ws-1\nws-2", "description": "Beacon"})

    assert form.is_valid()
    assert form.summary() == "Beacon\nws-1, ws-2"


def test_the_summary_holds_the_reason(acme):
    form = bind("start_remote_shell", acme, {"endpoints": "ws-1", "reason": "Triage"})

    assert form.is_valid()
    assert form.summary() == "Triage\nws-1"


def test_a_detection_model_exception_for_an_endpoint_targets_the_endpoint(acme):
    data = {"detection_model": "Model", "scope": "WS-042.corp.example.com", "description": "x"}

    form = bind("add_detection_model_exception", acme, data)

    assert form.is_valid()
    assert form.targets() == [Target("endpoint", "ws-042.corp.example.com")]
    assert form.endpoints() == ["ws-042.corp.example.com"]


def test_a_terminated_process_keeps_its_file_name(acme):
    data = {"endpoints": "ws-1", "sha1": SHA1, "file_name": "evil.exe"}

    form = bind("terminate_process", acme, data)

    assert form.is_valid()
    assert form.parameters()["file_name"] == "evil.exe"


def test_a_sandbox_submission_of_a_file_sample_targets_the_file(acme):
    form = bind("submit_sandbox", acme, {"urls": "", "sha1": SHA1.upper()})

    assert form.is_valid(), form.errors
    assert form.parameters() == {"sha1": SHA1}
    assert form.targets() == [Target("file", SHA1)]


def test_yara_rules_may_scan_a_target_path(acme):
    data = {"endpoints": "ws-1", "target_path": "/home/alice/Downloads", "process_name": ""}

    form = bind("run_yara_rules", acme, data, rule_file())

    assert form.is_valid(), form.errors
    assert form.parameters()["target_path"] == "/home/alice/Downloads"
    assert "process_name" not in form.parameters()


# Refused inputs, each named on its field


@pytest.mark.parametrize(
    "key,data,field,message",
    [
        (
            "terminate_process",
            {"endpoints": "ws-1", "sha1": "abc"},
            "sha1",
            "`abc` is not a SHA-1 hash: expected 40 hexadecimal characters.",
        ),
        (
            "terminate_process",
            {"endpoints": "ws-1", "sha1": SHA1, "file_name": "C:\\Temp\\evil.exe"},
            "file_name",
            "is not a file name",
        ),
        (
            "run_osquery",
            {"endpoints": "ws-1", "query": "ATTACH DATABASE '/tmp/x.db' AS x"},
            "query",
            "expected one read-only SELECT statement",
        ),
        (
            "run_osquery",
            {"endpoints": "ws-1", "query": "SELECT 1; DELETE FROM users"},
            "query",
            "The query has 2 statements",
        ),
        (
            "collect_file",
            {"endpoints": "ws-1", "file_path": "C:\\Windows\\..\\secret.txt"},
            "file_path",
            "without `..` segments",
        ),
        (
            "isolate_endpoint",
            {"endpoints": "ws-1\nmy host", "description": "x"},
            "endpoints",
            "Line 2: `my host` is not an endpoint",
        ),
        (
            "isolate_endpoint",
            {"endpoints": "ws-1", "description": ""},
            "description",
            "This field is required.",
        ),
        (
            "isolate_endpoint",
            {"endpoints": "ws-1", "description": "x" * 2_001},
            "description",
            "at most 2000 characters",
        ),
        (
            "scan_for_malware",
            {"endpoints": "\n".join(f"ws-{n}" for n in range(101))},
            "endpoints",
            "You entered 101 endpoints: expected at most 100 per request.",
        ),
        (
            "start_remote_shell",
            {"endpoints": "ws-1\nws-2", "reason": "x"},
            "endpoints",
            "You entered 2 endpoints: expected exactly one for this action.",
        ),
        (
            "collect_file",
            {"endpoints": "ws-1\nws-2", "file_path": "/etc/passwd"},
            "endpoints",
            "expected exactly one",
        ),
        (
            "start_remote_shell",
            {"endpoints": "ws-1", "reason": "   "},
            "reason",
            "This field is required.",
        ),
        (
            "add_to_block_list",
            {"objects": f"sha256:{'a' * 64}", "description": "x"},
            "objects",
            "is not an allowed object type: expected one of sha1, url, ip, domain.",
        ),
        (
            "add_suspicious_object_exception",
            {"objects": "md5:abc", "description": "x"},
            "objects",
            "is not an allowed object type",
        ),
        (
            "add_detection_model_exception",
            {"detection_model": "m", "scope": "bad:scope", "description": "x"},
            "scope",
            "is neither an endpoint nor an account",
        ),
        (
            "add_detection_model_exception",
            {"detection_model": "line\nbreak", "scope": "ws-1", "description": "x"},
            "detection_model",
            "expected printable text on one line",
        ),
        (
            "link_workbench_alert",
            {"operation": "delete", "alert_ids": "WB-1-20261130-00001", "incident_id": "I-1"},
            "operation",
            "Select a valid choice",
        ),
        (
            "link_workbench_alert",
            {"operation": "link", "alert_ids": "WB-1-20261340-00001", "incident_id": "I-1"},
            "alert_ids",
            "is not a Workbench alert ID",
        ),
        (
            "link_workbench_alert",
            {"operation": "link", "alert_ids": "WB-1-20261130-00001", "incident_id": "I 1"},
            "incident_id",
            "is not an incident ID",
        ),
        (
            "collect_evidence",
            {"endpoints": "ws-1"},
            "evidence_types",
            "Choose at least one evidence type to collect.",
        ),
        (
            "disable_user_account",
            {"account": "a:b", "description": "x"},
            "account",
            "is not an account",
        ),
        (
            "quarantine_email",
            {"mailbox": "bob@example.com", "message_id": "abc@host"},
            "message_id",
            "is not a Message-ID",
        ),
        (
            "quarantine_email",
            {"mailbox": "bob", "message_id": "<a@b>"},
            "mailbox",
            "is not an e-mail address",
        ),
        (
            "collect_network_analysis_package",
            {"appliance": "ddi 01", "detection_id": "d1"},
            "appliance",
            "is not an appliance",
        ),
        (
            "collect_network_analysis_package",
            {"appliance": "ddi-01", "detection_id": "d/1"},
            "detection_id",
            "is not a detection ID",
        ),
        (
            "deploy_tippingpoint_filter",
            {"cve_ids": "CVE-24-1", "sms_profile": "Default"},
            "cve_ids",
            "is not a CVE ID",
        ),
        (
            "submit_sandbox",
            {"urls": "https://ok.example/\nftp://files.example/x"},
            "urls",
            "Line 2: `ftp://files.example/x` is not a URL",
        ),
        (
            "submit_sandbox",
            {"urls": "\n".join(f"https://e.example/{n}" for n in range(101))},
            "urls",
            "You entered 101 URLs: expected at most 100 per request.",
        ),
        (
            "run_custom_script",
            {"endpoints": "ws-1", "script": "999999"},
            "script",
            "Choose a script from this organization's script library.",
        ),
    ],
)
def test_a_bad_value_is_named_on_its_field(acme, key, data, field, message):
    form = bind(key, acme, data)

    assert not form.is_valid()
    assert message in errors_of(form, field)


def test_a_hostile_list_is_refused_before_it_is_parsed(acme):
    form = bind("scan_for_malware", acme, {"endpoints": "ws-1\n" * 100_001})

    assert not form.is_valid()
    assert "at most 200000 characters" in errors_of(form, "endpoints")


def test_a_dump_takes_a_process_id_or_name(ready, acme):
    form = bind("dump_process_memory", acme, {"endpoints": "ws-042", "process": "C:\\evil.exe"})

    assert not form.is_valid()
    assert "is not a process" in errors_of(form, "process")


def test_another_organizations_script_is_not_a_choice(acme, globex, operator):
    theirs = make_script(globex, operator, name="globex.ps1")

    form = bind("run_custom_script", acme, {"endpoints": "ws-1", "script": str(theirs.pk)})

    assert not form.is_valid()
    assert "this organization's script library" in errors_of(form, "script")
    assert str(theirs.pk) not in str(form_for("run_custom_script")(organization=acme)["script"])


def test_script_parameters_stay_on_one_line(ready, acme):
    data = {"endpoints": "ws-1", "script": str(ready["script"].pk), "parameters": "-a\n-b"}

    form = bind("run_custom_script", acme, data)

    assert not form.is_valid()
    assert "on one line" in errors_of(form, "parameters")


def test_yara_rules_that_do_not_compile_are_refused(acme):
    data = {"endpoints": "ws-1", "process_name": "evil.exe"}

    form = bind("run_yara_rules", acme, data, rule_file(b"rule broken { condition: }"))

    assert not form.is_valid()
    assert "The YARA rules do not compile" in errors_of(form, "rule_file")


def test_a_rule_file_of_two_megabytes_is_refused_without_being_read(acme):
    class Unreadable(SimpleUploadedFile):
        def read(self, *args):
            raise AssertionError("an oversized upload must not be read")

    data = {"endpoints": "ws-1", "process_name": "evil.exe"}
    files = {"rule_file": Unreadable("big.yar", b"/" * 2_097_152)}

    form = bind("run_yara_rules", acme, data, files)

    assert not form.is_valid()
    assert (
        "The rule file is 2,097,152 bytes: expected a file under 1 MB (1,048,576 bytes)."
        in errors_of(form, "rule_file")
    )


@pytest.mark.parametrize(
    "paths,message",
    [
        (
            {"target_path": "/opt/app", "process_name": "evil.exe"},
            "both a target path and a process",
        ),
        ({"target_path": "", "process_name": ""}, "Give a target path"),
    ],
)
def test_yara_rules_scan_a_target_path_or_a_process_not_both(acme, paths, message):
    form = bind("run_yara_rules", acme, {"endpoints": "ws-1", **paths}, rule_file())

    assert not form.is_valid()
    assert message in errors_of(form)


def test_yara_rules_scan_a_process_by_name_not_by_id(acme):
    data = {"endpoints": "ws-1", "process_name": "4242"}

    form = bind("run_yara_rules", acme, data, rule_file())

    assert not form.is_valid()
    assert "is a process ID: expected a process name" in errors_of(form, "process_name")
    assert errors_of(form) == ""


@pytest.mark.parametrize(
    "data,message",
    [
        ({"urls": "https://e.example/", "sha1": SHA1}, "both URLs and a SHA-1"),
        ({"urls": "", "sha1": ""}, "Give URLs to analyse or the SHA-1"),
    ],
)
def test_a_sandbox_takes_urls_or_a_sha1_not_both(acme, data, message):
    form = bind("submit_sandbox", acme, data)

    assert not form.is_valid()
    assert message in errors_of(form)


# Restore Connection needs an endpoint isolated by this portal


def test_restoring_an_endpoint_that_is_not_isolated_is_refused(acme, operator):
    make_request(acme, operator, "isolate_endpoint", ["ws-1"])

    form = bind("restore_connection", acme, {"endpoints": "ws-1\nhost-7"})

    assert not form.is_valid()
    assert errors_of(form, "endpoints") == (
        "`host-7` is not isolated by this portal: only an endpoint isolated through "
        "Isolate Endpoint can have its connection restored."
    )


def test_restoring_an_isolated_endpoint_is_accepted(acme, operator):
    make_request(acme, operator, "isolate_endpoint", ["ws-1", "host-7"])

    form = bind("restore_connection", acme, {"endpoints": "ws-1\nHOST-7"})

    assert form.is_valid(), form.errors
    assert form.endpoints() == ["ws-1", "host-7"]


def test_restoring_an_endpoint_isolated_in_another_organization_is_refused(acme, globex, operator):
    make_request(globex, operator, "isolate_endpoint", ["ws-1"])

    form = bind("restore_connection", acme, {"endpoints": "ws-1"})

    assert not form.is_valid()


# Memory dumps need an active remote shell


def test_a_memory_dump_without_a_remote_shell_is_refused(acme):
    form = bind("dump_process_memory", acme, {"endpoints": "ws-1", "process": "evil.exe"})

    assert not form.is_valid()
    assert "`ws-1` has no active remote shell session" in errors_of(form, "endpoints")


def test_a_memory_dump_through_an_active_remote_shell_is_accepted(acme, operator):
    make_request(acme, operator, "start_remote_shell", ["ws-1"])

    form = bind("dump_process_memory", acme, {"endpoints": "ws-1", "process": "evil.exe"})

    assert form.is_valid(), form.errors
    assert form.parameters() == {"endpoints": ["ws-1"], "process": "evil.exe"}


def test_a_memory_dump_through_an_expired_remote_shell_is_refused(acme, operator):
    five_hours_ago = timezone.now() - timedelta(hours=5)
    make_request(acme, operator, "start_remote_shell", ["ws-1"], submitted_at=five_hours_ago)

    form = bind("dump_process_memory", acme, {"endpoints": "ws-1", "process": "evil.exe"})

    assert not form.is_valid()
    assert "no active remote shell session" in errors_of(form, "endpoints")


# The state the forms depend on: what really ran


def test_a_successful_isolation_isolates(acme, operator):
    make_request(acme, operator, "isolate_endpoint", ["ws-1", "ws-2"])

    assert isolated_endpoints(acme, ["ws-1", "ws-3"]) == {"ws-1"}


@pytest.mark.parametrize(
    "status",
    [
        RequestStatus.PENDING,
        RequestStatus.REJECTED,
        RequestStatus.EXPIRED,
        RequestStatus.CANCELLED,
        RequestStatus.APPROVED,
        RequestStatus.QUEUED,
        RequestStatus.IN_PROGRESS,
        RequestStatus.FAILED,
        RequestStatus.TERMINATED,
    ],
)
def test_an_isolation_that_did_not_succeed_does_not_isolate(acme, operator, status):
    make_request(acme, operator, "isolate_endpoint", ["ws-1"], status=status)

    assert isolated_endpoints(acme, ["ws-1"]) == set()


def test_a_partially_successful_isolation_isolates_the_endpoints_it_reached(acme, operator):
    request = make_request(
        acme,
        operator,
        "isolate_endpoint",
        ["ws-1", "fail-2"],
        status=RequestStatus.PARTIALLY_SUCCESSFUL,
        target_status=TargetStatus.SUCCESSFUL,
    )
    request.targets.filter(value="fail-2").update(status=TargetStatus.FAILED)

    assert isolated_endpoints(acme, ["ws-1", "fail-2"]) == {"ws-1"}


def test_a_later_restore_ends_the_isolation(acme, operator):
    now = timezone.now()
    make_request(
        acme, operator, "isolate_endpoint", ["ws-1", "ws-2"], submitted_at=now - timedelta(hours=2)
    )
    make_request(acme, operator, "restore_connection", ["ws-1"], submitted_at=now)

    assert isolated_endpoints(acme, ["ws-1", "ws-2"]) == {"ws-2"}


def test_the_order_is_that_of_the_executions_not_of_the_submissions(acme, operator):
    now = timezone.now()
    # Submitted first, but it ran after the restore: the endpoint is isolated again.
    make_request(
        acme,
        operator,
        "isolate_endpoint",
        ["ws-1"],
        submitted_at=now - timedelta(hours=3),
        finished_at=now,
    )
    make_request(
        acme,
        operator,
        "restore_connection",
        ["ws-1"],
        submitted_at=now - timedelta(hours=2),
        finished_at=now - timedelta(hours=1),
    )

    assert isolated_endpoints(acme, ["ws-1"]) == {"ws-1"}


def test_an_isolation_after_a_restore_isolates_again(acme, operator):
    now = timezone.now()
    make_request(
        acme, operator, "isolate_endpoint", ["ws-1"], submitted_at=now - timedelta(hours=3)
    )
    make_request(
        acme, operator, "restore_connection", ["ws-1"], submitted_at=now - timedelta(hours=2)
    )
    make_request(acme, operator, "isolate_endpoint", ["ws-1"], submitted_at=now)

    assert isolated_endpoints(acme, ["ws-1"]) == {"ws-1"}


@pytest.mark.parametrize(
    "status", [RequestStatus.PENDING, RequestStatus.QUEUED, RequestStatus.FAILED]
)
def test_a_restore_that_did_not_succeed_does_not_end_the_isolation(acme, operator, status):
    now = timezone.now()
    make_request(
        acme, operator, "isolate_endpoint", ["ws-1"], submitted_at=now - timedelta(hours=1)
    )
    make_request(acme, operator, "restore_connection", ["ws-1"], status=status)

    assert isolated_endpoints(acme, ["ws-1"]) == {"ws-1"}


def test_isolation_is_per_organization(acme, globex, operator):
    make_request(globex, operator, "isolate_endpoint", ["ws-1"])

    assert isolated_endpoints(acme, ["ws-1"]) == set()
    assert isolated_endpoints(globex, ["ws-1"]) == {"ws-1"}


def test_isolation_of_many_endpoints_costs_one_query(acme, operator, django_assert_num_queries):
    endpoints = [f"ws-{n}" for n in range(100)]
    now = timezone.now()
    make_request(
        acme, operator, "isolate_endpoint", endpoints, submitted_at=now - timedelta(hours=1)
    )
    make_request(acme, operator, "restore_connection", endpoints[:50], submitted_at=now)

    with django_assert_num_queries(1):
        isolated = isolated_endpoints(acme, endpoints)

    assert isolated == set(endpoints[50:])


def test_no_endpoints_need_no_query(acme, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert isolated_endpoints(acme, []) == set()


def test_a_remote_shell_is_active_until_its_validity_ends(acme, operator):
    now = timezone.now()
    make_request(
        acme, operator, "start_remote_shell", ["ws-1"], active_until=now + timedelta(hours=4)
    )

    assert has_active_remote_shell(acme, "ws-1", now=now + timedelta(hours=3, minutes=59))
    assert not has_active_remote_shell(acme, "ws-1", now=now + timedelta(hours=4))
    assert not has_active_remote_shell(acme, "ws-2", now=now)


def test_a_remote_shell_ended_early_is_no_longer_active(acme, operator):
    now = timezone.now()
    make_request(
        acme,
        operator,
        "start_remote_shell",
        ["ws-1"],
        submitted_at=now - timedelta(hours=1),
        ended_at=now - timedelta(minutes=1),
    )

    assert not has_active_remote_shell(acme, "ws-1", now=now)
    assert has_active_remote_shell(acme, "ws-1", now=now - timedelta(minutes=2))


@pytest.mark.parametrize(
    "status",
    [
        RequestStatus.PENDING,
        RequestStatus.REJECTED,
        RequestStatus.APPROVED,
        RequestStatus.QUEUED,
        RequestStatus.IN_PROGRESS,
        RequestStatus.FAILED,
        RequestStatus.TERMINATED,
    ],
)
def test_a_remote_shell_that_did_not_start_is_not_active(acme, operator, status):
    make_request(acme, operator, "start_remote_shell", ["ws-1"], status=status)

    assert not has_active_remote_shell(acme, "ws-1")


def test_a_remote_shell_is_per_organization(acme, globex, operator):
    make_request(globex, operator, "start_remote_shell", ["ws-1"])

    assert not has_active_remote_shell(acme, "ws-1")


def test_an_isolation_is_not_a_remote_shell(acme, operator):
    make_request(acme, operator, "isolate_endpoint", ["ws-1"])

    assert not has_active_remote_shell(acme, "ws-1")

"""Trend's own Python SDK, pytmv1 0.11 unmodified, pointed at the portal's live server.

pytmv1 pins old versions of requests and pydantic that the portal's environment does not share
(requests ~=2.32.3 beside the 2.34 that the API tests use), so it runs in a virtual environment
of its own, made once from PyPI under the user's cache folder (keyed by the pins below) and
driven in a subprocess. Without PyPI or PostgreSQL these tests skip; with CI=true they fail.
"""

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.utils import timezone

from actions.sync import sync_catalog
from api.tokens import create_token, revoke_token
from approvals import services
from approvals.models import ActionRequest, ScriptLanguage

from .approvals_helpers import turn_on_auto_approval
from .conftest import IN_CI

# pytmv1 and the exact versions of what it installs with it.
PINS = (
    "pytmv1==0.11.0",
    "annotated-types==0.8.0",
    "beautifulsoup4==4.11.2",
    "certifi==2026.10.19.post1",
    "charset-normalizer==3.5.3",
    "idna==3.20",
    "pydantic==2.8.2",
    "pydantic_core==2.20.1",
    "requests==2.32.5",
    "soupsieve==4.1.4",
    "typing_extensions==4.16.0",
    "urllib3==2.8.0",
)
GUID = "5a4f2d3e-0b1c-4d2e-9f80-1a2b3c4d5e6f"
SHA1 = "3395856ce81f2b7382dee72602f798b642f14140"

pytestmark = [pytest.mark.postgresql, pytest.mark.django_db(transaction=True)]


def _missing(reason: str):
    if IN_CI:
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def _environment_folder() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha256("\n".join(PINS).encode()).hexdigest()[:16]
    return cache / "response-portal" / f"pytmv1-{digest}"


@pytest.fixture(scope="session")
def pytmv1_python() -> str:
    """The Python of pytmv1's own virtual environment, made on first use (one maker at a
    time: others wait on the lock, then find it made)."""
    folder = _environment_folder()
    python = folder / "bin" / "python"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "complete").exists():
            building = folder.with_name(folder.name + ".building")
            shutil.rmtree(building, ignore_errors=True)
            shutil.rmtree(folder, ignore_errors=True)
            try:
                subprocess.run(
                    [sys.executable, "-m", "venv", str(building)], check=True, timeout=120
                )
                subprocess.run(
                    [
                        str(building / "bin" / "python"),
                        *("-m", "pip", "install", "--quiet", "--disable-pip-version-check"),
                        *PINS,
                    ],
                    check=True,
                    timeout=600,
                    capture_output=True,
                )
            except (subprocess.SubprocessError, OSError) as error:
                detail = getattr(error, "stderr", b"") or b""
                _missing(
                    f"pytmv1's virtual environment could not be made (needs PyPI): {error} "
                    f"{detail.decode(errors='replace')[-2000:]}"
                )
            (building / "complete").touch()
            building.rename(folder)
    return str(python)


# The start of every script: a client as an integration makes one, and JSON out.
PRELUDE = textwrap.dedent(
    """
    import json, os, sys
    import pytmv1
    from pytmv1 import (
        AccountRequest, CollectFileRequest, CustomScriptRequest, EmailMessageIdRequest,
        EndpointRequest, ObjectRequest, ObjectType, TerminateProcessRequest,
    )

    client = pytmv1.init("response-portal-tests", os.environ["TOKEN"], os.environ["URL"])
    INPUTS = json.loads(os.environ["INPUTS"])

    def multi(result):
        return {
            "code": result.result_code.value,
            "items": [i.model_dump(mode="json") for i in result.response.items]
            if result.response else None,
            "errors": [e.model_dump(mode="json") for e in result.errors],
        }

    def task(task_id, poll=True):
        result = client.task.get_result(task_id, poll=poll, poll_time_sec=60)
        return {
            "code": result.result_code.value,
            "class": type(result.response).__name__ if result.response else None,
            "response": result.response.model_dump(mode="json") if result.response else None,
            "error": result.error.model_dump(mode="json") if result.error else None,
        }

    out = {}
    """
)


def run_pytmv1(python: str, url: str, token: str, script: str, **inputs) -> dict:
    """Run `script` after PRELUDE with pytmv1 against `url`; it fills `out`, returned here."""
    code = PRELUDE + textwrap.dedent(script) + "\nprint(json.dumps(out))\n"
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "URL": url,
        "TOKEN": token,
        "INPUTS": json.dumps(inputs),
    }
    completed = subprocess.run(
        [python, "-c", code],
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def _catalog_kept(django_db_blocker):
    """The flush after each of these tests empties the catalog; put it back afterwards."""
    yield
    with django_db_blocker.unblock():
        sync_catalog()


@pytest.fixture
def portal(requires_postgresql, _catalog_kept, live_server, pytmv1_python):
    sync_catalog()
    return live_server.url, pytmv1_python


def test_pytmv1_isolates_two_endpoints_an_admin_approves_and_its_polling_sees_succeeded(
    portal, operator, admin, acme
):
    url, python = portal
    token = create_token(operator, acme, name="SOAR")[1]
    submitted = run_pytmv1(
        python,
        url,
        token,
        """
        result = client.endpoint.isolate(
            EndpointRequest(endpoint_name="web-01.acme.test", description="C2 beacon"),
            EndpointRequest(agent_guid=INPUTS["guid"], description="C2 beacon"),
        )
        out["isolate"] = multi(result)
        out["tasks"] = [task(i["task_id"], poll=True) for i in out["isolate"]["items"]]
        """,
        guid=GUID,
    )
    isolate = submitted["isolate"]
    assert isolate["code"] == "SUCCESS" and isolate["errors"] == []
    action_request = ActionRequest.objects.get()
    assert [i["status"] for i in isolate["items"]] == [202, 202]
    assert [i["task_id"] for i in isolate["items"]] == [
        f"{action_request.uuid}-0",
        f"{action_request.uuid}-1",
    ]
    # Polling stops at once on a task waiting for approval, as it does with Trend.
    waiting = submitted["tasks"]
    assert [t["class"] for t in waiting] == ["EndpointTaskResp", "EndpointTaskResp"]
    assert [t["response"]["status"] for t in waiting] == ["pendingApproval"] * 2
    assert [(t["response"]["endpoint_name"], t["response"]["agent_guid"]) for t in waiting] == [
        ("web-01.acme.test", ""),
        (GUID, GUID),
    ]
    assert waiting[0]["response"]["account"] == "operator"
    assert waiting[0]["response"]["description"] == "C2 beacon"

    services.approve_request(action_request.pk, actor=admin)

    polled = run_pytmv1(
        python,
        url,
        token,
        """
        out["tasks"] = [task(i) for i in INPUTS["ids"]]
        """,
        ids=[i["task_id"] for i in isolate["items"]],
    )
    assert [t["response"]["status"] for t in polled["tasks"]] == ["succeeded", "succeeded"]
    assert [t["response"]["action"] for t in polled["tasks"]] == ["isolate", "isolate"]


def test_pytmv1_with_a_revoked_token_gets_the_json_error_it_expects(portal, operator, acme):
    url, python = portal
    token, secret = create_token(operator, acme, name="SOAR")
    revoke_token(token.pk, actor=operator)
    refused = run_pytmv1(
        python,
        url,
        secret,
        """
        out["isolate"] = multi(client.endpoint.isolate(
            EndpointRequest(endpoint_name="web-01.acme.test", description="C2")
        ))
        out["task"] = task("00000000-0000-4000-8000-000000000000-0")
        """,
    )
    (error,) = refused["isolate"]["errors"]
    assert refused["isolate"]["code"] == "ERROR"
    assert (error["status"], error["code"]) == (401, "Unauthorized")
    assert "was revoked" in error["message"]
    assert refused["task"]["code"] == "ERROR"
    assert (refused["task"]["error"]["status"], refused["task"]["error"]["code"]) == (
        401,
        "Unauthorized",
    )
    assert not ActionRequest.objects.exists()


def test_pytmv1_reads_refused_items_in_order_and_an_expired_task(portal, operator, acme):
    url, python = portal
    token = create_token(operator, acme, name="SOAR")[1]
    mixed = run_pytmv1(
        python,
        url,
        token,
        """
        out["isolate"] = multi(client.endpoint.isolate(
            EndpointRequest(endpoint_name="web-01.acme.test", description="C2"),
            EndpointRequest(endpoint_name="web\\u200b02.acme.test", description="C2"),
            EndpointRequest(endpoint_name="web-03.acme.test"),
        ))
        out["unsupported"] = multi(client.email.delete(
            EmailMessageIdRequest(message_id="<a@b.test>", mail_box="a@b.test")
        ))
        """,
    )
    isolate = mixed["isolate"]
    assert isolate["code"] == "ERROR"
    assert [e["status"] for e in isolate["errors"]] == [202, 400, 400]
    action_request = ActionRequest.objects.get()
    assert isolate["errors"][0]["task_id"] == f"{action_request.uuid}-0"
    assert "U+200B" in isolate["errors"][1]["message"]
    assert isolate["errors"][2]["message"] == "description: This field is required."
    (unsupported,) = mixed["unsupported"]["errors"]
    assert unsupported["status"] == 400
    assert "POST /v3.0/response/emails/quarantine" in unsupported["message"]

    ActionRequest.objects.update(expires_at=timezone.now())
    expired = run_pytmv1(
        python, url, token, 'out["task"] = task(INPUTS["id"])', id=f"{action_request.uuid}-0"
    )["task"]
    assert expired["code"] == "SUCCESS"
    assert expired["response"]["status"] == "rejected"
    assert expired["response"]["error"]["code"] == "TaskExpired"
    assert "expired" in expired["response"]["error"]["message"]


def test_pytmv1_drives_every_other_supported_call_to_succeeded(portal, operator, acme):
    url, python = portal
    turn_on_auto_approval(acme)
    services.upload_script(
        acme,
        actor=operator,
        name="collect.ps1",
        language=ScriptLanguage.POWERSHELL,
        content="Get-Process\n",
    )
    token = create_token(operator, acme, name="SOAR")[1]
    ran = run_pytmv1(
        python,
        url,
        token,
        """
        calls = {
            "isolate": client.endpoint.isolate(
                EndpointRequest(endpoint_name="web-09.acme.test", description="C2")
            ),
            "restore": client.endpoint.restore(EndpointRequest(endpoint_name="web-09.acme.test")),
            "collect_file": client.endpoint.collect_file(
                CollectFileRequest(endpoint_name="web-01.acme.test", file_path="C:\\\\evil.exe"),
                CollectFileRequest(endpoint_name="web-02.acme.test", file_path="/opt/evil"),
            ),
            "terminate_process": client.endpoint.terminate_process(
                TerminateProcessRequest(
                    endpoint_name="web-01.acme.test", file_sha1=INPUTS["sha1"], file_name="evil.exe"
                )
            ),
            "run_script": client.script.run(
                CustomScriptRequest(
                    endpoint_name="web-01.acme.test", file_name="collect.ps1", parameter="-All"
                ),
                CustomScriptRequest(
                    agent_guid=INPUTS["guid"], file_name="collect.ps1", parameter="-All"
                ),
            ),
            "block": client.object.add_block(
                ObjectRequest(object_type=ObjectType.FILE_SHA1, object_value=INPUTS["sha1"],
                              description="dropper"),
                ObjectRequest(object_type=ObjectType.DOMAIN, object_value="evil.example",
                              description="dropper"),
            ),
            "quarantine": client.email.quarantine(
                EmailMessageIdRequest(message_id="<1234@mail.example>",
                                      mail_box="ceo@acme.example")
            ),
            "disable": client.account.disable(
                AccountRequest(account_name="jdoe@acme.example", description="phished")
            ),
        }
        for name, result in calls.items():
            out[name] = multi(result)
            out[name]["tasks"] = [task(i["task_id"]) for i in out[name]["items"] or []]
        """,
        sha1=SHA1,
        guid=GUID,
    )
    expected_classes = {
        "isolate": "EndpointTaskResp",
        "restore": "EndpointTaskResp",
        "collect_file": "CollectFileTaskResp",
        "terminate_process": "TerminateProcessTaskResp",
        "run_script": "CustomScriptTaskResp",
        "block": "BlockListTaskResp",
        "quarantine": "EmailMessageTaskResp",
        "disable": "AccountTaskResp",
    }
    for name, class_name in expected_classes.items():
        call = ran[name]
        assert call["code"] == "SUCCESS", (name, call["errors"])
        assert call["tasks"], name
        for polled in call["tasks"]:
            assert polled["class"] == class_name, (name, polled)
            assert polled["response"]["status"] == "succeeded", (name, polled)
    collected = [t["response"] for t in ran["collect_file"]["tasks"]]
    assert [t["file_path"] for t in collected] == ["C:\\evil.exe", "/opt/evil"]
    assert collected[0]["id"].rsplit("-", 1)[0] != collected[1]["id"].rsplit("-", 1)[0]
    terminated = ran["terminate_process"]["tasks"][0]["response"]
    assert (terminated["file_sha1"], terminated["file_name"]) == (SHA1, "evil.exe")
    scripts = [t["response"] for t in ran["run_script"]["tasks"]]
    assert [(t["file_name"], t["parameter"]) for t in scripts] == [("collect.ps1", "-All")] * 2
    assert scripts[0]["id"].rsplit("-", 1)[0] == scripts[1]["id"].rsplit("-", 1)[0]
    blocked = [t["response"] for t in ran["block"]["tasks"]]
    assert [(t["type"], t["value"]) for t in blocked] == [
        ("fileSha1", SHA1),
        ("domain", "evil.example"),
    ]
    (message,) = ran["quarantine"]["tasks"][0]["response"]["tasks"]
    assert (message["mail_box"], message["message_id"]) == (
        "ceo@acme.example",
        "<1234@mail.example>",
    )
    (account,) = ran["disable"]["tasks"][0]["response"]["tasks"]
    assert (account["account_name"], account["iam"]) == ("jdoe@acme.example", "AAD")
    assert ran["restore"]["tasks"][0]["response"]["action"] == "restoreIsolate"
    assert ActionRequest.objects.filter(requester=operator).count() == 9

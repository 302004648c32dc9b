import hashlib

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from approvals.models import Script, ScriptLanguage
from approvals.script_views import ScriptUploadForm
from audit.models import AuditEvent

from .conftest import client_for

pytestmark = pytest.mark.django_db

URL = reverse("script_library", args=["acme"])
POWERSHELL = b"Get-Process | Where-Object { $_.CPU -gt 100 }\r\nWrite-Output 'done'\r\n"
BASH = "#!/bin/sh\n# Liste des processus — UTF-8\nps aux\n".encode()


def upload(client, file_name: str, content: bytes, name: str = ""):
    return client.post(URL, {"name": name, "file": SimpleUploadedFile(file_name, content)})


def errors_of(response) -> str:
    form = response.context["form"]
    return " ".join(message for messages in form.errors.values() for message in messages)


@pytest.mark.parametrize(
    "file_name,content,language",
    [
        ("collect.ps1", POWERSHELL, ScriptLanguage.POWERSHELL),
        ("Collect.PS1", POWERSHELL, ScriptLanguage.POWERSHELL),
        ("inventory.sh", BASH, ScriptLanguage.BASH),
    ],
)
def test_operator_uploads_a_script_kept_with_its_sha256_and_size(
    operator, acme, file_name, content, language
):
    response = upload(client_for(operator), file_name, content)

    assert response.status_code == 302
    assert response["Location"] == URL
    script = Script.objects.get(organization=acme)
    assert script.name == file_name
    assert script.language == language
    assert script.content.encode() == content
    assert script.sha256 == hashlib.sha256(content).hexdigest()
    assert script.size == len(content)
    assert script.uploaded_by == operator
    event = AuditEvent.objects.get(organization=acme, verb="script.uploaded")
    assert event.actor == operator
    assert event.data["sha256"] == script.sha256
    assert event.source == "web"


def test_the_name_given_replaces_the_file_name(operator, acme):
    upload(client_for(operator), "x.sh", BASH, name="Inventory of processes")

    assert Script.objects.get(organization=acme).name == "Inventory of processes"


def test_success_is_announced_and_the_script_listed(operator):
    response = client_for(operator).post(
        URL, {"file": SimpleUploadedFile("collect.ps1", POWERSHELL)}, follow=True
    )

    page = response.content.decode()
    assert "Uploaded collect.ps1" in page
    assert hashlib.sha256(POWERSHELL).hexdigest() in page
    assert "Get-Process" in page


@pytest.mark.parametrize(
    "file_name,content,expected",
    [
        ("tool.exe", b"MZ\x90\x00", "expected a .ps1 (PowerShell) or .sh (Bash) file"),
        ("notes.txt", b"echo hi\n", "expected a .ps1 (PowerShell) or .sh (Bash) file"),
        ("script", b"echo hi\n", "expected a .ps1 (PowerShell) or .sh (Bash) file"),
        ("big.sh", b"#" * 1_048_576, "The script is 1,048,576 bytes: expected a file under 1 MB"),
        ("latin1.sh", "echo 'café'\n".encode("latin-1"), "is not UTF-8 text"),
        ("binary.ps1", b"Write-Output 1\x00\x01", "NUL bytes"),
        ("blank.sh", b"  \n\n", "The script is empty"),
        ("empty.sh", b"", "The submitted file is empty"),
    ],
)
def test_it_refuses_a_file_that_is_not_a_usable_script(
    operator, acme, file_name, content, expected
):
    response = upload(client_for(operator), file_name, content)

    assert response.status_code == 200
    assert expected in errors_of(response)
    assert expected in response.content.decode()
    assert not Script.objects.filter(organization=acme).exists()
    assert not AuditEvent.objects.filter(verb="script.uploaded").exists()


def test_it_checks_the_size_before_reading_the_file():
    class Unreadable(SimpleUploadedFile):
        def read(self, *args):
            raise AssertionError("an oversized upload must not be read")

    form = ScriptUploadForm({}, {"file": Unreadable("big.sh", b"#" * 2_000_000)})

    assert not form.is_valid()
    assert "The script is 2,000,000 bytes: expected a file under 1 MB" in form.errors["file"][0]


def test_it_refuses_a_second_script_of_the_same_name(operator, acme):
    client = client_for(operator)
    upload(client, "collect.ps1", POWERSHELL)

    response = upload(client, "other.sh", BASH, name="collect.ps1")

    assert "already has a script named `collect.ps1`" in errors_of(response)
    assert Script.objects.filter(organization=acme).count() == 1


def test_the_same_name_is_free_in_another_organization(operator, acme, globex):
    Script.objects.create(
        organization=globex,
        name="collect.ps1",
        language=ScriptLanguage.POWERSHELL,
        content="x",
        sha256="0" * 64,
        size=1,
        uploaded_by=operator,
    )

    response = upload(client_for(operator), "collect.ps1", POWERSHELL)

    assert response.status_code == 302
    assert Script.objects.filter(organization=acme, name="collect.ps1").exists()


@pytest.mark.parametrize("who", ["operator", "admin", "auditor"])
def test_every_member_sees_the_library(cast, acme, who):
    Script.objects.create(
        organization=acme,
        name="inventory.sh",
        language=ScriptLanguage.BASH,
        content="ps aux\n",
        sha256="a" * 64,
        size=7,
        uploaded_by=cast["operator"],
    )

    response = client_for(cast[who]).get(URL)

    assert response.status_code == 200
    page = response.content.decode()
    assert "inventory.sh" in page
    assert "a" * 64 in page
    assert "Bash" in page
    assert ("Upload a script" in page) == (who == "operator")


def test_another_organizations_scripts_are_not_listed(operator, globex):
    Script.objects.create(
        organization=globex,
        name="globex-only.ps1",
        language=ScriptLanguage.POWERSHELL,
        content="x",
        sha256="0" * 64,
        size=1,
        uploaded_by=operator,
    )

    response = client_for(operator).get(URL)

    assert "globex-only.ps1" not in response.content.decode()


@pytest.mark.parametrize("who", ["admin", "auditor"])
def test_only_an_operator_can_upload(cast, acme, who):
    response = upload(client_for(cast[who]), "collect.ps1", POWERSHELL)

    assert response.status_code == 403
    assert not Script.objects.exists()


@pytest.mark.parametrize("method", ["get", "post"])
def test_outsider_gets_404(outsider, acme, method):
    response = getattr(client_for(outsider), method)(URL)

    assert response.status_code == 404


def test_anonymous_user_is_sent_to_sign_in(client, acme):
    response = client.get(URL)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={URL}"


def test_an_upload_without_the_csrf_token_is_refused(csrf_client, operator):
    csrf_client.force_login(operator)

    response = upload(csrf_client, "collect.ps1", POWERSHELL)

    assert response.status_code == 403
    assert not Script.objects.exists()


def test_an_upload_with_the_csrf_token_passes(csrf_client, operator, acme):
    csrf_client.force_login(operator)
    csrf_client.get(URL)
    token = csrf_client.cookies["csrftoken"].value

    response = csrf_client.post(
        URL,
        {"file": SimpleUploadedFile("collect.ps1", POWERSHELL), "csrfmiddlewaretoken": token},
    )

    assert response.status_code == 302
    assert Script.objects.filter(organization=acme).count() == 1

"""The organization's script library, which Run Remote Custom Script runs scripts from."""

from dataclasses import dataclass
from pathlib import PurePath

from crispy_forms.helper import FormHelper
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models.functions import Left
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from actions.validators import read_text, refuse_invisible
from audit.context import AuditContext
from responseportal.access import get_membership
from responseportal.models import Role

from . import services
from .models import Script, ScriptLanguage
from .transitions import TransitionRefused

LANGUAGES_BY_EXTENSION = {".ps1": ScriptLanguage.POWERSHELL, ".sh": ScriptLanguage.BASH}
PREVIEW_LINES = 10
PREVIEW_CHARACTERS = 2_000


@dataclass(frozen=True)
class ScriptFile:
    file_name: str
    language: str
    content: str


class ScriptUploadForm(forms.Form):
    name = forms.CharField(
        max_length=255, required=False, help_text="Optional; the file name if left empty."
    )
    file = forms.FileField(
        max_length=255,
        help_text="A PowerShell (.ps1) or Bash (.sh) script: UTF-8 text under 1 MB.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.helper = FormHelper()
        self.helper.form_tag = False

    def clean_name(self) -> str:
        name = refuse_invisible(self.cleaned_data["name"])
        if not name.isprintable():
            raise ValidationError(
                "The name holds a line break or another control character: expected "
                "printable text on one line.",
                code="invalid",
            )
        return name

    def clean_file(self) -> ScriptFile:
        upload = self.cleaned_data["file"]
        extension = PurePath(upload.name).suffix.lower()
        language = LANGUAGES_BY_EXTENSION.get(extension)
        if language is None:
            raise ValidationError(
                f"`{upload.name}` is not a script this library takes: expected a .ps1 "
                "(PowerShell) or .sh (Bash) file.",
                code="extension",
            )
        refuse_invisible(upload.name)
        content = read_text(upload, what="The script", expected="a text script saved as UTF-8")
        if not content.strip():
            raise ValidationError("The script is empty: expected its code.", code="empty")
        # A bidirectional override in code shows one program and runs another (Trojan Source).
        refuse_invisible(content, what="The script")
        return ScriptFile(file_name=upload.name, language=language, content=content)

    def clean(self):
        cleaned_data = super().clean()
        script = cleaned_data.get("file")
        if script is not None and not cleaned_data.get("name"):
            cleaned_data["name"] = script.file_name
        return cleaned_data


def _preview(content: str) -> str:
    return "\n".join(content.splitlines()[:PREVIEW_LINES])


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def script_library(request: HttpRequest, slug: str) -> HttpResponse:
    """Every member sees the library; operators upload to it."""
    uploading = request.method == "POST"
    membership = get_membership(request.user, slug, roles=[Role.OPERATOR] if uploading else None)
    organization = membership.organization
    form = ScriptUploadForm(request.POST, request.FILES) if uploading else ScriptUploadForm()
    if uploading and form.is_valid():
        script_file = form.cleaned_data["file"]
        try:
            script = services.upload_script(
                organization,
                actor=request.user,
                name=form.cleaned_data["name"],
                language=script_file.language,
                content=script_file.content,
                context=AuditContext.from_request(request),
            )
        except TransitionRefused as refused:
            form.add_error("name", refused.message)
        else:
            messages.success(
                request,
                f"Uploaded {script.name} ({script.get_language_display()}, {script.size:,} bytes, "
                f"SHA-256 {script.sha256}).",
            )
            return redirect("script_library", slug)
    scripts = list(
        Script.objects.filter(organization=organization)
        .select_related("uploaded_by")
        .defer("content")
        .annotate(beginning=Left("content", PREVIEW_CHARACTERS))
    )
    for script in scripts:
        script.preview = _preview(script.beginning)
    return render(
        request,
        "approvals/script_library.html",
        {
            "membership": membership,
            "organization": organization,
            "scripts": scripts,
            "form": form if membership.role == Role.OPERATOR else None,
        },
    )

"""One request form per response action.

Each form declares its fields' types and validation; `register` names, labels and explains
them from the catalog, so a field's label or help text is written once, in `catalog.py`. The
submit view builds a form with `form_for(key)(data, files, organization=org)` and, once it is
valid, hands `parameters()`, `targets()`, `endpoints()` and `summary()` to `submit_request`.
"""

import copy
import hashlib
import re
import uuid
from collections.abc import Callable
from typing import ClassVar

from crispy_forms.helper import FormHelper
from crispy_forms.layout import Layout
from django import forms
from django.core.exceptions import ImproperlyConfigured, ValidationError

from actions import catalog, validators
from actions.validators import shown
from responseportal.models import Organization

from . import break_glass as break_glass_rules
from . import state
from .models import Script
from .services import Target

MAX_LIST_LENGTH = 200_000
MAX_TEXT_LENGTH = 2_000
MAX_SCRIPT_PARAMETERS_LENGTH = 1_000
MAX_FILE_NAME_LENGTH = 255

EVIDENCE_TYPES = (
    ("amcache", "AmCache"),
    ("shimcache", "ShimCache"),
    ("autorun", "AutoRun"),
    ("event_log", "Event Log"),
    ("mft", "MFT"),
    ("prefetch", "Prefetch"),
    ("registry_hives", "Registry Hives"),
    ("browser_history", "Browser History"),
)

_DETECTION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _printable(value: str, what: str) -> str:
    if not value.isprintable():
        raise ValidationError(
            f"`{shown(value)}` is not a valid {what}: expected printable text on one line.",
            code="invalid",
        )
    return value


def _list_field() -> forms.CharField:
    """A text area holding one item per line."""
    return forms.CharField(max_length=MAX_LIST_LENGTH, widget=forms.Textarea(attrs={"rows": 5}))


def _one_endpoint_field() -> forms.CharField:
    return forms.CharField(max_length=1_000)


def _explanation_field() -> forms.CharField:
    """A description or a reason: free text for the customer's records."""
    return forms.CharField(max_length=MAX_TEXT_LENGTH, widget=forms.Textarea(attrs={"rows": 3}))


def _exactly_one_of(form: forms.Form, first: str, second: str, *, neither: str, both: str) -> None:
    """Refuse the form unless exactly one of two optional fields is given (and valid)."""
    if form.has_error(first) or form.has_error(second):
        return
    given = [name for name in (first, second) if form.cleaned_data.get(name)]
    if not given:
        raise ValidationError(neither, code="required")
    if len(given) == 2:
        raise ValidationError(both, code="invalid")


class ActionForm(forms.Form):
    """What every request form shares; a subclass declares one action's own fields."""

    action_key: ClassVar[str] = ""
    exactly_one_endpoint: ClassVar[bool] = False

    # One per rendered form: a double click or a resubmit sends the same token again.
    submission_token = forms.UUIDField(widget=forms.HiddenInput)
    # Run at once without approval, where the organization allows it; reviewed afterwards.
    break_glass = forms.BooleanField(
        label="Break glass: run now, without waiting for approval",
        required=False,
        help_text=(
            "For an emergency only. Every admin is told at once, and an admin reviews the run "
            "afterwards."
        ),
    )
    justification = forms.CharField(
        label="Justification",
        required=False,
        max_length=break_glass_rules.MAX_JUSTIFICATION,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=(
            f"Required to break glass: at least {break_glass_rules.MIN_JUSTIFICATION} "
            "characters on why this cannot wait for an admin's approval."
        ),
    )

    def __init__(self, *args, organization: Organization, **kwargs):
        super().__init__(*args, **kwargs)
        self.organization = organization
        if not self.is_bound:
            self.initial = {"submission_token": uuid.uuid4(), **self.initial}
        self.helper = FormHelper()
        self.helper.form_tag = False

    def offer_break_glass(self, offered: bool) -> None:
        """Show the break-glass fields only where the organization allows it for this action;
        posted anyway, they are refused by the decision rule, which says why."""
        if not offered:
            self.helper.layout = Layout(
                *(name for name in self.fields if name not in ("break_glass", "justification"))
            )

    @classmethod
    def definition(cls) -> catalog.ActionDefinition:
        return catalog.BY_KEY[cls.action_key]

    def clean(self):
        cleaned_data = super().clean()
        if cleaned_data.get("break_glass") and not self.has_error("justification"):
            try:
                cleaned_data["justification"] = break_glass_rules.cleaned_justification(
                    cleaned_data.get("justification", "")
                )
            except ValidationError as problem:
                self.add_error("justification", problem)
        if self.has_error("submission_token"):
            self.add_error(
                None,
                ValidationError(
                    "This form lost its submission token: reload the page and submit it again.",
                    code="token",
                ),
            )
        return cleaned_data

    def clean_endpoints(self) -> list[str]:
        return validators.validate_endpoints(
            self.cleaned_data["endpoints"], exactly_one=self.exactly_one_endpoint
        )

    def parameters(self) -> dict:
        """The cleaned values under the catalog's parameter names; empty optional ones omitted."""
        values = {}
        for parameter in self.definition().parameters:
            value = self.cleaned_data[parameter.name]
            if not parameter.required and value in ("", [], None):
                continue
            values[parameter.name] = value
        return values

    def targets(self) -> list[Target]:
        """What the request acts on; for most actions, its endpoints."""
        return [Target("endpoint", endpoint) for endpoint in self.cleaned_data["endpoints"]]

    def endpoints(self) -> list[str]:
        """The endpoint targets, which the organization's scope applies to."""
        return [target.value for target in self.targets() if target.kind == "endpoint"]

    def summary(self) -> str:
        """The description or reason and the targets, as plain text for keyword search."""
        explanation = self.cleaned_data.get("description") or self.cleaned_data.get("reason") or ""
        targets = ", ".join(target.value for target in self.targets())
        return "\n".join(part for part in (explanation, targets) if part)


FORMS: dict[str, type[ActionForm]] = {}
# The fields of every request form, after the action's own.
SHARED_FIELDS = ("submission_token", "break_glass", "justification")


def register(key: str) -> Callable[[type[ActionForm]], type[ActionForm]]:
    """Make the decorated class the form of action `key`, its fields labelled by the catalog."""
    definition = catalog.BY_KEY[key]

    def decorate(form_class: type[ActionForm]) -> type[ActionForm]:
        declared = set(form_class.base_fields) - set(SHARED_FIELDS)
        expected = {parameter.name for parameter in definition.parameters}
        if declared != expected:
            raise ImproperlyConfigured(
                f"{form_class.__name__} declares {sorted(declared)}; the catalog's {key} has "
                f"{sorted(expected)}."
            )
        fields = {}
        for parameter in definition.parameters:
            # A copy: forms that inherit a field must not relabel each other's.
            field = copy.deepcopy(form_class.base_fields[parameter.name])
            field.label = parameter.label
            field.help_text = parameter.help
            field.required = field.widget.is_required = parameter.required
            if isinstance(field, forms.CharField):
                # Approvers read every typed value: none may hide or reorder characters.
                field.validators.append(validators.refuse_invisible)
            fields[parameter.name] = field
        for name in SHARED_FIELDS:
            fields[name] = form_class.base_fields[name]
        form_class.base_fields = fields
        form_class.action_key = key
        form_class.exactly_one_endpoint = catalog.ONE_ENDPOINT in definition.parameters
        FORMS[key] = form_class
        return form_class

    return decorate


def form_for(key: str) -> type[ActionForm]:
    """The form of action `key`; KeyError for a key the catalog does not have."""
    return FORMS[key]


# Approval not required


@register("link_workbench_alert")
class LinkWorkbenchAlertForm(ActionForm):
    operation = forms.ChoiceField(
        choices=[("link", "Link"), ("unlink", "Unlink")], initial="link", widget=forms.RadioSelect
    )
    alert_ids = _list_field()
    incident_id = forms.CharField(max_length=200)

    def clean_alert_ids(self) -> list[str]:
        return validators.validate_alert_ids(self.cleaned_data["alert_ids"])

    def clean_incident_id(self) -> str:
        return validators.validate_incident_id(self.cleaned_data["incident_id"])

    def targets(self) -> list[Target]:
        return [Target("alert", alert_id) for alert_id in self.cleaned_data["alert_ids"]]


class _ObjectsForm(ActionForm):
    object_types: ClassVar[tuple[str, ...]]

    objects = _list_field()
    description = _explanation_field()

    def clean_objects(self) -> list[dict[str, str]]:
        return validators.validate_objects(self.cleaned_data["objects"], self.object_types)

    def targets(self) -> list[Target]:
        return [Target("object", f"{o['type']}:{o['value']}") for o in self.cleaned_data["objects"]]


@register("add_suspicious_object_exception")
class AddSuspiciousObjectExceptionForm(_ObjectsForm):
    object_types = ("sha1", "sha256", "url", "ip", "domain")


def _scope_target(value: str) -> Target:
    """An endpoint if `value` names one, else an account."""
    try:
        return Target("endpoint", validators.validate_endpoint(value))
    except ValidationError:
        pass
    try:
        return Target("account", validators.validate_account(value))
    except ValidationError as error:
        if error.code == "look_alike":
            raise
        raise ValidationError(
            f"`{shown(value)}` is neither an endpoint nor an account: expected a hostname, "
            "an IP address or an agent GUID, or an account as user@domain, DOMAIN\\user or "
            "a sAMAccountName.",
            code="invalid",
        ) from None


@register("add_detection_model_exception")
class AddDetectionModelExceptionForm(ActionForm):
    detection_model = forms.CharField(max_length=200)
    scope = forms.CharField(max_length=300)
    description = _explanation_field()

    def clean_detection_model(self) -> str:
        return _printable(self.cleaned_data["detection_model"], "detection model name")

    def clean_scope(self) -> str:
        return _scope_target(self.cleaned_data["scope"]).value

    def targets(self) -> list[Target]:
        return [_scope_target(self.cleaned_data["scope"])]


@register("dump_process_memory")
class DumpProcessMemoryForm(ActionForm):
    endpoints = _one_endpoint_field()
    process = forms.CharField(max_length=300)

    def clean_endpoints(self) -> list[str]:
        endpoints = super().clean_endpoints()
        if not state.has_active_remote_shell(self.organization, endpoints[0]):
            raise ValidationError(
                f"`{shown(endpoints[0])}` has no active remote shell session: a memory dump "
                "runs through one. Request Start Remote Shell Session for this endpoint and "
                "dump the memory once it is approved, while it lasts.",
                code="no_shell",
            )
        return endpoints

    def clean_process(self) -> str | int:
        return validators.validate_process(self.cleaned_data["process"])


# Critical


@register("add_to_block_list")
class AddToBlockListForm(_ObjectsForm):
    object_types = ("sha1", "url", "ip", "domain")


@register("collect_evidence")
class CollectEvidenceForm(ActionForm):
    endpoints = _list_field()
    evidence_types = forms.MultipleChoiceField(
        choices=EVIDENCE_TYPES,
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one evidence type to collect."},
    )

    def clean_evidence_types(self) -> list[str]:
        chosen = set(self.cleaned_data["evidence_types"])
        return [key for key, _ in EVIDENCE_TYPES if key in chosen]


@register("collect_file")
class CollectFileForm(ActionForm):
    endpoints = _one_endpoint_field()
    file_path = forms.CharField(max_length=validators.MAX_PATH_LENGTH)

    def clean_file_path(self) -> str:
        return validators.validate_absolute_path(self.cleaned_data["file_path"])


@register("disable_user_account")
class DisableUserAccountForm(ActionForm):
    account = forms.CharField(max_length=300)
    description = _explanation_field()

    def clean_account(self) -> str:
        return validators.validate_account(self.cleaned_data["account"])

    def targets(self) -> list[Target]:
        return [Target("account", self.cleaned_data["account"])]


@register("isolate_endpoint")
class IsolateEndpointForm(ActionForm):
    endpoints = _list_field()
    description = _explanation_field()


@register("quarantine_email")
class QuarantineEmailForm(ActionForm):
    mailbox = forms.CharField(max_length=400)
    message_id = forms.CharField(max_length=1_000)

    def clean_mailbox(self) -> str:
        return validators.validate_mailbox(self.cleaned_data["mailbox"])

    def clean_message_id(self) -> str:
        return validators.validate_message_id(self.cleaned_data["message_id"])

    def targets(self) -> list[Target]:
        message = f"{self.cleaned_data['mailbox']} {self.cleaned_data['message_id']}"
        return [Target("message", message)]


@register("restore_connection")
class RestoreConnectionForm(ActionForm):
    endpoints = _list_field()

    def clean_endpoints(self) -> list[str]:
        endpoints = super().clean_endpoints()
        isolated = state.isolated_endpoints(self.organization, endpoints)
        errors = [
            f"`{shown(endpoint)}` is not isolated by this portal: only an endpoint isolated "
            "through Isolate Endpoint can have its connection restored."
            for endpoint in endpoints
            if endpoint not in isolated
        ]
        if len(errors) > validators.MAX_LISTED_ERRORS:
            hidden = len(errors) - validators.MAX_LISTED_ERRORS
            errors = [
                *errors[: validators.MAX_LISTED_ERRORS],
                f"… and {hidden} more endpoints that are not isolated.",
            ]
        if errors:
            raise ValidationError(errors, code="not_isolated")
        return endpoints


@register("scan_for_malware")
class ScanForMalwareForm(ActionForm):
    endpoints = _list_field()


@register("terminate_process")
class TerminateProcessForm(ActionForm):
    endpoints = _one_endpoint_field()
    sha1 = forms.CharField(max_length=200)
    file_name = forms.CharField(max_length=MAX_FILE_NAME_LENGTH)

    def clean_sha1(self) -> str:
        return validators.validate_sha1(self.cleaned_data["sha1"])

    def clean_file_name(self) -> str:
        name = self.cleaned_data["file_name"]
        if name and (
            "/" in name
            or "\\" in name
            or name in (".", "..")
            or validators.has_control_characters(name)
        ):
            raise ValidationError(
                f"`{shown(name)}` is not a file name: expected a name without a folder, "
                "such as malware.exe.",
                code="invalid",
            )
        return name


# Recommended


@register("collect_network_analysis_package")
class CollectNetworkAnalysisPackageForm(ActionForm):
    appliance = forms.CharField(max_length=300)
    detection_id = forms.CharField(max_length=200)

    def clean_appliance(self) -> str:
        return validators.validate_appliance(self.cleaned_data["appliance"])

    def clean_detection_id(self) -> str:
        detection_id = self.cleaned_data["detection_id"]
        if not _DETECTION_ID.fullmatch(detection_id):
            raise ValidationError(
                f"`{shown(detection_id)}` is not a detection ID: expected 1 to 64 letters, "
                "digits, hyphens (-) or underscores (_).",
                code="invalid",
            )
        return detection_id

    def targets(self) -> list[Target]:
        return [Target("appliance", self.cleaned_data["appliance"])]


@register("deploy_tippingpoint_filter")
class DeployTippingPointFilterForm(ActionForm):
    cve_ids = _list_field()
    sms_profile = forms.CharField(max_length=100)

    def clean_cve_ids(self) -> list[str]:
        return validators.validate_cve_ids(self.cleaned_data["cve_ids"])

    def clean_sms_profile(self) -> str:
        return _printable(self.cleaned_data["sms_profile"], "SMS profile name")

    def targets(self) -> list[Target]:
        return [Target("cve", cve_id) for cve_id in self.cleaned_data["cve_ids"]]


@register("run_osquery")
class RunOsqueryForm(ActionForm):
    endpoints = _list_field()
    query = forms.CharField(
        max_length=validators.MAX_QUERY_LENGTH, widget=forms.Textarea(attrs={"rows": 6})
    )

    def clean_query(self) -> str:
        return validators.validate_osquery(self.cleaned_data["query"])


@register("run_custom_script")
class RunCustomScriptForm(ActionForm):
    endpoints = _list_field()
    script = forms.ModelChoiceField(
        queryset=Script.objects.none(),
        error_messages={
            "invalid_choice": "Choose a script from this organization's script library."
        },
    )
    # The form's metaclass takes fields out of the class namespace, so the inherited
    # `parameters()` method stays reachable beside this field of the same name.
    parameters = forms.CharField(max_length=MAX_SCRIPT_PARAMETERS_LENGTH)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        script = self.fields["script"]
        script.queryset = Script.objects.filter(organization=self.organization).only(
            "name", "language", "sha256"
        )
        script.label_from_instance = lambda s: f"{s.name} ({s.get_language_display()})"

    def clean_parameters(self) -> str:
        arguments = self.cleaned_data["parameters"]
        if validators.has_control_characters(arguments):
            raise ValidationError(
                "The parameters hold a line break or another control character: expected "
                "the script's arguments on one line.",
                code="invalid",
            )
        return arguments

    def clean_script(self) -> dict:
        # What identified the script when the request was made, even if the library changes.
        script = self.cleaned_data["script"]
        return {
            "id": script.pk,
            "name": script.name,
            "sha256": script.sha256,
            "language": script.language,
        }


@register("run_yara_rules")
class RunYaraRulesForm(ActionForm):
    endpoints = _list_field()
    rule_file = forms.FileField(max_length=MAX_FILE_NAME_LENGTH)
    target_path = forms.CharField(max_length=validators.MAX_PATH_LENGTH)
    process_name = forms.CharField(max_length=300)

    def clean_rule_file(self) -> dict:
        upload = self.cleaned_data["rule_file"]
        validators.refuse_invisible(upload.name)
        source = validators.validate_yara_rules(upload)
        upload.seek(0)
        data = upload.read()
        return {
            "name": upload.name,
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
            "source": source,
        }

    def clean_target_path(self) -> str:
        path = self.cleaned_data["target_path"]
        return validators.validate_absolute_path(path) if path else ""

    def clean_process_name(self) -> str:
        name = self.cleaned_data["process_name"]
        if not name:
            return ""
        process = validators.validate_process(name)
        if isinstance(process, int):
            raise ValidationError(
                f"`{shown(name)}` is a process ID: expected a process name such as "
                "notepad.exe, since process IDs change between endpoints.",
                code="invalid",
            )
        return process

    def clean(self):
        cleaned_data = super().clean()
        _exactly_one_of(
            self,
            "target_path",
            "process_name",
            neither="Give a target path (the folder or file to scan) or a process name "
            "(the process whose memory to scan).",
            both="You gave both a target path and a process name: give only one of them.",
        )
        return cleaned_data


@register("start_remote_shell")
class StartRemoteShellForm(ActionForm):
    endpoints = _one_endpoint_field()
    reason = _explanation_field()


@register("submit_sandbox")
class SubmitSandboxForm(ActionForm):
    urls = _list_field()
    sha1 = forms.CharField(max_length=200)

    def clean_urls(self) -> list[str]:
        urls = self.cleaned_data["urls"]
        return validators.validate_urls(urls) if urls.strip() else []

    def clean_sha1(self) -> str:
        sha1 = self.cleaned_data["sha1"]
        return validators.validate_sha1(sha1) if sha1 else ""

    def clean(self):
        cleaned_data = super().clean()
        _exactly_one_of(
            self,
            "urls",
            "sha1",
            neither="Give URLs to analyse or the SHA-1 of a collected file sample.",
            both="You gave both URLs and a SHA-1: submit the URLs and the file sample as "
            "two requests.",
        )
        return cleaned_data

    def targets(self) -> list[Target]:
        targets = [Target("url", url) for url in self.cleaned_data["urls"]]
        if self.cleaned_data["sha1"]:
            targets.append(Target("file", self.cleaned_data["sha1"]))
        return targets

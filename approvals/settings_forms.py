"""The approval settings form, and the import of endpoint lists from CSV files."""

import csv
import io
import re
from collections.abc import Callable, Iterator, Sequence

from django import forms
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.core.validators import EmailValidator

from actions.models import Category, ResponseAction
from actions.validators import MAX_LISTED_ERRORS, read_text, shown, validate_endpoint
from responseportal.http import masked_url

from .models import MAX_DIGEST_MINUTES, MAX_REMIND_AFTER_MINUTES, ApprovalSettings, ScopeMode
from .notifications import validate_webhook_url
from .services import SCOPE_LISTS, SETTINGS_FIELDS, settings_problem

MAX_SCOPE_ENDPOINTS = 10_000
MAX_NOTIFY_EMAILS = 20
CSV_HEADERS = frozenset({"hostname", "endpoint", "ip", "host", "guid", "agent guid", "agent_guid"})
# Lists up to this long are shown at once; longer ones behind a <details> summary.
SHOWN_ENDPOINTS = 20

CSV_EXPECTED = "a spreadsheet saved as “CSV UTF-8”"
# Notification addresses go to real mailboxes; Django allows `localhost` by default.
_EMAIL_VALIDATOR = EmailValidator(allowlist=[])


def _rows(text: str) -> Iterator[tuple[int, list[str]]]:
    """(line number where the row starts, stripped cells) of every CSV row."""
    reader = csv.reader(io.StringIO(text, newline=""))
    start = 1
    for row in reader:
        yield start, [cell.strip() for cell in row]
        start = reader.line_num + 1


def parse_endpoint_csv(data: UploadedFile | bytes) -> list[str]:
    """The endpoints of a CSV file, one hostname, IP address or agent GUID per row, canonical
    and unique.

    The file is refused whole (ValidationError) when anything in it is wrong: the message
    names each bad row by its line number.
    """
    text = read_text(data, what="The file", expected=CSV_EXPECTED)
    # Checking a value costs up to 0.1 ms: a 1 MB file of 100,000 different bad rows took 9 s.
    # A file that may be imported has no more different rows than endpoints and a header.
    rows = len({line.strip().lower() for line in text.splitlines()} - {""})
    if rows > MAX_SCOPE_ENDPOINTS + 1:
        raise ValidationError(
            f"The file has {rows:,} different rows: expected at most "
            f"{MAX_SCOPE_ENDPOINTS:,} endpoints.",
            code="too_many",
        )

    endpoints: dict[str, None] = {}
    errors: list[str] = []
    # Each distinct value is checked once: a file may repeat one value many thousand times.
    checked: dict[str, str | ValidationError] = {}
    first = True
    try:
        for number, cells in _rows(text):
            values = [cell for cell in cells if cell]
            if not values:
                continue
            if first and len(values) == 1 and cells[0].lower() in CSV_HEADERS:
                first = False
                continue
            first = False
            if len(values) > 1:
                errors.append(
                    f"Line {number}: {len(values)} values in one row: expected one hostname, "
                    "IP address or agent GUID per row, in the first column."
                )
            elif not cells[0]:
                errors.append(
                    f"Line {number}: the first column is empty: expected the hostname, "
                    "IP address or agent GUID there."
                )
            else:
                if cells[0] not in checked:
                    try:
                        checked[cells[0]] = validate_endpoint(cells[0])
                    except ValidationError as error:
                        checked[cells[0]] = error
                outcome = checked[cells[0]]
                if isinstance(outcome, ValidationError):
                    errors.extend(f"Line {number}: {message}" for message in outcome.messages)
                else:
                    endpoints.setdefault(outcome)
    except csv.Error as error:
        raise ValidationError(
            f"The file is not readable as CSV: {error}.", code="invalid"
        ) from None

    if errors:
        shown = errors[:MAX_LISTED_ERRORS]
        if len(errors) > MAX_LISTED_ERRORS:
            shown.append(f"… and {len(errors) - MAX_LISTED_ERRORS} more bad rows.")
        raise ValidationError(
            [
                f"Nothing was imported: {len(errors):,} "
                f"{'row is' if len(errors) == 1 else 'rows are'} not valid. "
                "Correct the file and import it again.",
                *shown,
            ],
            code="invalid",
        )
    if not endpoints:
        raise ValidationError(
            "The file has no endpoints: expected one hostname, IP address or agent GUID per row.",
            code="empty",
        )
    if len(endpoints) > MAX_SCOPE_ENDPOINTS:
        raise ValidationError(
            f"The file lists {len(endpoints):,} endpoints: "
            f"expected at most {MAX_SCOPE_ENDPOINTS:,}.",
            code="too_many",
        )
    return list(endpoints)


APPROVALS_FIELD_PREFIX = "approvals_needed__"
APPROVALS_CHOICES = [("1", "1 admin"), ("2", "2 distinct admins"), ("3", "3 distinct admins")]


def approvals_field_name(action_key: str) -> str:
    return f"{APPROVALS_FIELD_PREFIX}{action_key}"


class ApprovalsNeededField(forms.ChoiceField):
    """How many distinct admins must approve a request for one action: exactly `1`, `2` or `3`
    as the list sends them (no other spelling). Left out, the current number stays."""

    def __init__(self, action: ResponseAction):
        super().__init__(
            label=f"Approvals needed for {action.name}",
            choices=APPROVALS_CHOICES,
            required=False,
            widget=forms.Select(attrs={"class": "form-select form-select-sm"}),
        )
        self.action_name = action.name

    def validate(self, value: str) -> None:
        if value and value not in {choice for choice, _ in APPROVALS_CHOICES}:
            raise ValidationError(
                f"`{shown(value, 20)}` is not a number of approvals for {self.action_name}: "
                "expected 1, 2 or 3.",
                code="invalid_choice",
            )


def _hours_field(label: str, *, maximum: int, default: int, help_text: str) -> forms.IntegerField:
    expected = f"a whole number of hours from 1 to {maximum}"
    return forms.IntegerField(
        label=label,
        min_value=1,
        max_value=maximum,
        initial=default,
        help_text=help_text,
        error_messages={
            "required": f"Enter {expected}.",
            "invalid": f"Enter {expected}.",
            "min_value": f"Expected at least 1 hour: enter {expected}.",
            "max_value": f"Expected at most {maximum} hours: enter {expected}.",
        },
    )


def _switch_and_actions(
    switch: str, switch_help: str, *, actions: str, actions_help: str, not_a_choice: str
) -> tuple[forms.BooleanField, forms.MultipleChoiceField]:
    """A master switch and the actions it applies to, ticked one by one (their choices are
    the organization's actions, set by the form)."""
    return (
        forms.BooleanField(label=switch, required=False, help_text=switch_help),
        forms.MultipleChoiceField(
            label=actions,
            required=False,
            widget=forms.CheckboxSelectMultiple(attrs={"class": "form-check-input"}),
            help_text=actions_help,
            error_messages={"invalid_choice": f"`%(value)s` is not {not_a_choice}."},
        ),
    )


def _csv_field(label: str, help_text: str) -> forms.FileField:
    return forms.FileField(
        label=label,
        required=False,
        help_text=help_text,
        widget=forms.FileInput(attrs={"accept": ".csv,text/csv"}),
    )


class ApprovalSettingsForm(forms.Form):
    """An organization's approval settings; read-only (every field disabled) unless `editable`."""

    auto_approval_enabled, auto_approved_actions = _switch_and_actions(
        "Enable automatic approval",
        "On: the actions ticked below run at once for endpoints in scope. Off: every "
        "Critical and Recommended action waits for an admin's decision.",
        actions="Actions approved automatically",
        actions_help="Used only while automatic approval is on; with it off, your ticks are "
        "kept for when you turn it on again.",
        not_a_choice="an action of the catalog",
    )
    scope_mode = forms.ChoiceField(
        label="Endpoint scope",
        choices=ScopeMode.choices,
        widget=forms.RadioSelect,
        help_text="A request for an endpoint outside the scope always waits for an admin.",
    )
    scope_selected_csv = _csv_field(
        "Import selected endpoints (CSV)",
        "One hostname, IP address or agent GUID per row, optionally under a header row "
        "`hostname`; "
        "UTF-8, under 1 MB, at most 10,000 endpoints. The file replaces the current list.",
    )
    clear_scope_selected = forms.BooleanField(
        label="Remove all selected endpoints",
        required=False,
        help_text="Empties the list of selected endpoints when you save.",
    )
    scope_exceptions_csv = _csv_field(
        "Import exceptions (CSV)",
        "Endpoints excluded from all endpoints, in the same format. Name each machine the "
        "ways operators may name it (hostname, IP address, agent GUID): a target named in a "
        "way the list does not use, or a short name for a listed full name, waits for an "
        "admin. The file replaces the current list.",
    )
    clear_scope_exceptions = forms.BooleanField(
        label="Remove all exceptions",
        required=False,
        help_text="Empties the list of exceptions when you save.",
    )
    pending_lifetime_hours = _hours_field(
        "Pending requests expire after (hours)",
        maximum=720,
        default=72,
        help_text=(
            "A request nobody decides within this time expires: it is rejected, never run. "
            "From 1 to 720 hours (30 days)."
        ),
    )
    remote_shell_validity_hours = _hours_field(
        "Remote shell sessions last (hours)",
        maximum=24,
        default=4,
        help_text=(
            "How long an approved remote shell session stays open, unless an admin ends it "
            "earlier. From 1 to 24 hours."
        ),
    )
    remind_after_minutes = forms.IntegerField(
        label="Remind admins after (minutes)",
        # Left out (an older page or client): the setting stays as it is.
        required=False,
        min_value=0,
        max_value=MAX_REMIND_AFTER_MINUTES,
        help_text=(
            "A request still waiting this long after its submission is announced again to the "
            "admins and the extra addresses, once; and once more when a quarter of its waiting "
            "time is left. 0: no reminders."
        ),
        error_messages={
            "invalid": "Enter a whole number of minutes, or 0 for no reminders.",
            "min_value": "Expected 0 (no reminders) or more minutes.",
            "max_value": f"Expected at most {MAX_REMIND_AFTER_MINUTES} minutes.",
        },
    )
    digest_minutes = forms.IntegerField(
        label="Announce automatic approvals every (minutes)",
        # Left out (an older page or client): the setting stays as it is.
        required=False,
        min_value=0,
        max_value=MAX_DIGEST_MINUTES,
        help_text=(
            "Automatic approvals are announced in one e-mail listing them all, at most this "
            "often; a requester whose requests finish more than three times in that time gets "
            "the rest in one e-mail too. 0: each at once. Requests waiting for a decision, "
            "reminders and break-glass runs are always announced at once."
        ),
        error_messages={
            "invalid": "Enter a whole number of minutes, or 0 to announce each at once.",
            "min_value": "Expected 0 (each at once) or more minutes.",
            "max_value": f"Expected at most {MAX_DIGEST_MINUTES} minutes (a day).",
        },
    )
    notify_emails = forms.CharField(
        label="Also notify",
        required=False,
        strip=False,  # keep leading blank lines, so that errors name the line the admin sees
        max_length=10_000,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=(
            "Extra e-mail addresses, one per line, at most 20. The organization's admins are "
            "always notified."
        ),
    )
    notify_webhook_url = forms.CharField(
        label="Also notify this webhook",
        required=False,
        max_length=500,
        widget=forms.URLInput(attrs={"placeholder": "https://soar.example.com/hooks/portal"}),
        help_text=(
            "Optional: an https address that receives each notification as signed JSON "
            "(see the README), for a chat channel or your own automation."
        ),
    )
    break_glass_enabled, break_glass_actions = _switch_and_actions(
        "Allow break-glass",
        "On: an operator may run one of the actions ticked below at once, without waiting "
        "for approval, by ticking Break glass and giving a justification. Every admin is told "
        "at once, and each such run waits in Needs review until an admin accepts or flags it.",
        actions="Actions that may break glass",
        actions_help="Only for endpoints in scope. Actions that need automatic approval can "
        "never break glass.",
        not_a_choice="an action that can break glass",
    )
    version = forms.IntegerField(
        widget=forms.HiddenInput,
        min_value=0,
        error_messages={
            "required": "The form is missing its version: reload the page and save again.",
            "invalid": "The form's version is not valid: reload the page and save again.",
            "min_value": "The form's version is not valid: reload the page and save again.",
        },
    )

    def __init__(
        self,
        *args,
        settings: ApprovalSettings,
        actions: Sequence[ResponseAction],
        editable: bool = True,
        **kwargs,
    ):
        kwargs.setdefault(
            "initial",
            {
                "auto_approval_enabled": settings.auto_approval_enabled,
                "auto_approved_actions": settings.auto_approved_actions,
                "scope_mode": settings.scope_mode,
                "pending_lifetime_hours": settings.pending_lifetime_hours,
                "remind_after_minutes": settings.remind_after_minutes,
                "digest_minutes": settings.digest_minutes,
                "remote_shell_validity_hours": settings.remote_shell_validity_hours,
                "notify_emails": "\n".join(settings.notify_emails),
                # Often a secret: only the admins, who may change it, see it in full.
                "notify_webhook_url": settings.notify_webhook_url
                if editable
                else masked_url(settings.notify_webhook_url),
                "break_glass_enabled": settings.break_glass_enabled,
                "break_glass_actions": settings.break_glass_actions,
                "version": settings.version,
            },
        )
        super().__init__(*args, **kwargs)
        self.settings = settings
        self.actions = list(actions)
        self.fields["auto_approved_actions"].choices = [
            (action.key, action.name) for action in self.actions
        ]
        self.fields["break_glass_actions"].choices = [
            (action.key, action.name) for action in self.actions if not action.needs_auto_approval
        ]
        for action in self.actions:
            field = ApprovalsNeededField(action)
            field.initial = str(settings.approvals_needed_for(action.key))
            self.fields[approvals_field_name(action.key)] = field
        if not editable:
            for field in self.fields.values():
                field.disabled = True

    def _in_catalog_order(self, name: str) -> list[str]:
        # So that the same ticks always compare equal to the stored list.
        ticked = set(self.cleaned_data[name])
        return [action.key for action in self.actions if action.key in ticked]

    def clean_auto_approved_actions(self) -> list[str]:
        return self._in_catalog_order("auto_approved_actions")

    def clean_break_glass_actions(self) -> list[str]:
        return self._in_catalog_order("break_glass_actions")

    def clean_scope_selected_csv(self) -> list[str] | None:
        return self._endpoints_from("scope_selected_csv")

    def clean_scope_exceptions_csv(self) -> list[str] | None:
        return self._endpoints_from("scope_exceptions_csv")

    def _endpoints_from(self, name: str) -> list[str] | None:
        upload = self.cleaned_data.get(name)
        if not upload:
            return None
        return parse_endpoint_csv(upload)

    def clean_remind_after_minutes(self) -> int:
        minutes = self.cleaned_data["remind_after_minutes"]
        return self.settings.remind_after_minutes if minutes is None else minutes

    def clean_digest_minutes(self) -> int:
        minutes = self.cleaned_data["digest_minutes"]
        return self.settings.digest_minutes if minutes is None else minutes

    def clean_notify_webhook_url(self) -> str:
        address = self.cleaned_data["notify_webhook_url"].strip()
        return validate_webhook_url(address) if address else ""

    def clean_notify_emails(self) -> list[str]:
        addresses: dict[str, None] = {}
        errors = []
        lines = re.split(r"\r\n|\r|\n", self.cleaned_data["notify_emails"])
        for number, line in enumerate(lines, start=1):
            address = line.strip()
            if not address:
                continue
            try:
                _EMAIL_VALIDATOR(address)
            except ValidationError:
                errors.append(
                    f"Line {number}: `{shown(address)}` is not an e-mail address: "
                    "expected one address per line, such as soc@example.com."
                )
            else:
                addresses.setdefault(address.lower())
        if errors:
            raise ValidationError(errors, code="invalid")
        if len(addresses) > MAX_NOTIFY_EMAILS:
            raise ValidationError(
                f"You entered {len(addresses)} addresses: expected at most {MAX_NOTIFY_EMAILS}.",
                code="too_many",
            )
        return list(addresses)

    def clean(self) -> dict:
        cleaned = super().clean()
        for name in SCOPE_LISTS:
            if cleaned.get(f"{name}_csv") is not None and cleaned.get(f"clear_{name}"):
                self.add_error(
                    f"clear_{name}",
                    "Either import a file or remove all endpoints, not both: the file "
                    "replaces the list anyway.",
                )
        # Fields valid alone but maybe not together: the second is named in the error.
        for depends_on, name in (
            ("auto_approval_enabled", "auto_approved_actions"),
            ("break_glass_enabled", "break_glass_actions"),
            ("pending_lifetime_hours", "remind_after_minutes"),
        ):
            if depends_on in cleaned and name in cleaned:
                problem = settings_problem(
                    ApprovalSettings(**{depends_on: cleaned[depends_on], name: cleaned[name]})
                )
                if problem:
                    self.add_error(name, problem)
        cleaned["approvals_needed"] = self._approvals_needed()
        selected_known = not {"scope_selected_csv", "clear_scope_selected"} & self.errors.keys()
        if "scope_mode" in cleaned and selected_known:
            selected = self.replaced_lists().get("scope_selected", self.settings.scope_selected)
            problem = settings_problem(
                ApprovalSettings(scope_mode=cleaned["scope_mode"], scope_selected=selected)
            )
            if problem:
                self.add_error("scope_mode", problem)
        return cleaned

    def _approvals_needed(self) -> dict[str, int]:
        """{action key: 2 or 3} from the approvals fields; a field the submission leaves out
        (an older script's form) keeps the action's current number."""
        actions = {action.key for action in self.actions}
        needed = {
            key: count
            for key, count in self.settings.approvals_needed.items()
            if key not in actions
        }
        for action in self.actions:
            name = approvals_field_name(action.key)
            if name in self.errors:
                continue
            value = self.cleaned_data.get(name, "")
            if value == "" and name in self.data and not self.fields[name].disabled:
                self.add_error(name, f"Choose 1, 2 or 3 approvals for {action.name}.")
                continue
            count = int(value) if value else self.settings.approvals_needed_for(action.key)
            if count > 1:
                needed[action.key] = count
        return needed

    def _by_category(self, key: str, item: Callable[[ResponseAction], object]) -> list[dict]:
        """`item(action)` of every action, under `key`, in one group per heading."""
        return [
            {
                "category": category,
                "heading": heading,
                key: [item(action) for action in self.actions if action.category == category],
            }
            for category, heading in (
                (Category.CRITICAL, "Critical actions"),
                (Category.RECOMMENDED, "Recommended actions"),
            )
        ]

    def approvals_groups(self) -> list[dict]:
        """The approvals-needed fields, under one heading per category."""
        return self._by_category("fields", lambda action: self[approvals_field_name(action.key)])

    def replaced_lists(self) -> dict[str, list[str]]:
        """The endpoint lists this submission replaces: by an imported file, or emptied."""
        replaced = {}
        for name in SCOPE_LISTS:
            imported = self.cleaned_data.get(f"{name}_csv")
            if imported is not None:
                replaced[name] = imported
            elif self.cleaned_data.get(f"clear_{name}"):
                replaced[name] = []
        return replaced

    def values(self) -> dict:
        """The new settings, as `services.update_approval_settings` takes them."""
        return {
            **{name: self.cleaned_data[name] for name in SETTINGS_FIELDS},
            **self.replaced_lists(),
        }

    def action_groups(self) -> list[dict]:
        """The action checkboxes, under one heading per category."""
        checkboxes = {
            checkbox.data["value"]: checkbox for checkbox in self["auto_approved_actions"]
        }
        return self._by_category(
            "choices", lambda action: {"checkbox": checkboxes[action.key], "action": action}
        )

    def scope_lists(self) -> list[dict]:
        """The current endpoint lists, each with its import and remove-all fields."""
        return [
            {
                "name": name,
                "title": title,
                "explanation": explanation,
                "endpoints": "\n".join(endpoints),
                "count": len(endpoints),
                "folded": len(endpoints) > SHOWN_ENDPOINTS,
                "rows": min(max(len(endpoints), 2), 10),
                "upload": self[f"{name}_csv"],
                "clear": self[f"clear_{name}"],
            }
            for name, title, explanation, endpoints in (
                (
                    "scope_selected",
                    "Selected endpoints",
                    "With “Selected endpoints only”, only these endpoints can be approved "
                    "automatically.",
                    self.settings.scope_selected,
                ),
                (
                    "scope_exceptions",
                    "Exceptions",
                    "With “All endpoints”, these endpoints always wait for an admin's decision.",
                    self.settings.scope_exceptions,
                ),
            )
        ]

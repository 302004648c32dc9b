"""The forms behind every POST of the request pages and the queue: approve, reject, decide in
bulk, end a remote shell session.

What a person types here (a comment, a reason) is kept with the request and in the audit log,
so it is text a database can store, of a bounded length: a NUL byte, which PostgreSQL's text
cannot hold, or a lone surrogate, which no UTF-8 text holds, is refused with a message, and
so is a reason over 2,000 characters (a bulk reject copies it into every request it decides).
"""

import uuid

from django import forms
from django.core.exceptions import ValidationError

from actions.validators import shown

from .services import REASON_REQUIRED
from .transitions import APPROVE, REJECT

# The same words as `execution.steps.end_remote_shell`, which also refuses an empty reason.
END_REASON_REQUIRED = "Give a reason for ending the session: it is kept with the request."

MAX_REASON_LENGTH = 2_000
# The queue shows 50 requests a page; a form never selects more than two pages' worth.
MAX_BULK_REQUESTS = 100


def _storable_and_bounded(what: str):
    def validate(value: str) -> None:
        if len(value) > MAX_REASON_LENGTH:
            raise ValidationError(
                f"The {what} is {len(value):,} characters long: expected at most "
                f"{MAX_REASON_LENGTH:,} characters.",
                code="too_long",
            )
        surrogate = next((c for c in value if "\ud800" <= c <= "\udfff"), None)
        if surrogate is not None:
            raise ValidationError(
                f"The {what} holds U+{ord(surrogate):04X}, half of a UTF-16 pair, which "
                "cannot be stored: expected text of whole characters.",
                code="unstorable",
            )

    return validate


def text_field(what: str, *, required_message: str = "") -> forms.CharField:
    """A comment or a reason (required if it has `required_message`): at most 2,000
    characters, every one of them storable."""
    return forms.CharField(
        required=bool(required_message),
        validators=[_storable_and_bounded(what)],
        error_messages={
            "required": required_message,
            # Django's CharField refuses NUL with this code.
            "null_characters_not_allowed": (
                f"The {what} holds a NUL character (U+0000), which cannot be stored: "
                "expected text without it."
            ),
        },
    )


def _next_field() -> forms.CharField:
    """The page to go back to; `_back` in the views checks that it stays on this site."""
    return forms.CharField(
        required=False,
        max_length=2_000,
        widget=forms.HiddenInput,
        error_messages={
            "max_length": "The page to return to is too long: expected at most 2,000 characters.",
            "null_characters_not_allowed": (
                "The page to return to holds a NUL character: expected an address on this site."
            ),
        },
    )


class ApproveForm(forms.Form):
    comment = text_field("comment")
    next = _next_field()


class RejectForm(forms.Form):
    reason = text_field("reason", required_message=REASON_REQUIRED)
    next = _next_field()


class EndSessionForm(forms.Form):
    reason = text_field("reason", required_message=END_REASON_REQUIRED)


class RequestIdsField(forms.Field):
    """The selected requests' IDs, as sent by the queue's checkboxes."""

    widget = forms.MultipleHiddenInput
    default_error_messages = {
        "required": "Select at least one request first.",
        "too_many": (
            f"%(count)d requests are selected: expected at most {MAX_BULK_REQUESTS} at once."
        ),
    }

    def to_python(self, value) -> list[str]:
        if not value:
            return []
        return [str(item) for item in (value if isinstance(value, list | tuple) else [value])]

    def validate(self, value: list[str]) -> None:
        super().validate(value)
        if len(value) > MAX_BULK_REQUESTS:
            raise ValidationError(
                self.error_messages["too_many"], code="too_many", params={"count": len(value)}
            )


class BulkDecisionForm(forms.Form):
    """Approve or reject the selected requests; a reject gives one reason for them all.

    A value that is not a request ID is skipped (`skipped` names it); the others are decided.
    """

    decision = forms.ChoiceField(
        choices=[(APPROVE, "Approve selected"), (REJECT, "Reject selected")],
        error_messages={
            "required": "Choose Approve selected or Reject selected.",
            "invalid_choice": "Choose Approve selected or Reject selected.",
        },
    )
    requests = RequestIdsField()
    reason = text_field("reason")
    next = _next_field()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.skipped: list[str] = []

    def clean_requests(self) -> list[uuid.UUID]:
        chosen = []
        for value in self.cleaned_data["requests"]:
            try:
                chosen.append(uuid.UUID(value))
            except ValueError:
                self.skipped.append(f"`{shown(value, 40)}` is not a request ID; it was skipped.")
        if not chosen:
            raise ValidationError(self.fields["requests"].error_messages["required"])
        return list(dict.fromkeys(chosen))

    def clean(self):
        cleaned_data = super().clean()
        rejecting = cleaned_data.get("decision") == REJECT
        if rejecting and not self.has_error("reason") and not cleaned_data.get("reason"):
            self.add_error("reason", REASON_REQUIRED)
        return cleaned_data


# "Select all N matching requests" decides at most this many at once, each in its own
# transaction with its own audit event; a larger filter is refused, asking to narrow it.
MAX_ALL_MATCHING = 500


class DecideAllMatchingForm(forms.Form):
    """Approve or reject every pending request the queue's filter matches: it carries the
    filter, not IDs, and `upto` (the newest request the confirmation page counted), so a
    request that arrives after the admin confirmed is never decided unseen."""

    decision = forms.ChoiceField(
        choices=[(APPROVE, "Approve"), (REJECT, "Reject")],
        error_messages={
            "required": "Choose Approve selected or Reject selected.",
            "invalid_choice": "Choose Approve selected or Reject selected.",
        },
    )
    reason = text_field("reason")
    action = forms.CharField(
        required=False,
        max_length=60,
        error_messages={
            "max_length": "The action filter is too long: expected an action key.",
            "null_characters_not_allowed": "The action filter holds a NUL character: "
            "expected an action key.",
        },
    )
    q = forms.CharField(
        required=False,
        max_length=200,
        error_messages={
            "max_length": "The search is too long: expected at most 200 characters.",
            "null_characters_not_allowed": "The search holds a NUL character: expected text "
            "without it.",
        },
    )
    upto = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=2**62,
        error_messages={"invalid": "The confirmation page is damaged: open the queue again."},
    )
    expected = forms.IntegerField(required=False, min_value=0, max_value=MAX_ALL_MATCHING)

    def clean(self):
        cleaned_data = super().clean()
        rejecting = cleaned_data.get("decision") == REJECT
        confirming = self.data.get("confirm") == "yes"
        reason_missing = not self.has_error("reason") and not cleaned_data.get("reason")
        if rejecting and confirming and reason_missing:
            self.add_error("reason", REASON_REQUIRED)
        if confirming and cleaned_data.get("upto") is None and not self.has_error("upto"):
            self.add_error("upto", "The confirmation page is damaged: open the queue again.")
        return cleaned_data


def problems(form: forms.Form) -> list[str]:
    """A refused form's messages, each saying what is wrong and what is expected."""
    return [message for messages in form.errors.values() for message in messages]

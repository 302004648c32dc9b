"""The form of the API tokens page."""

from crispy_forms.helper import FormHelper
from django import forms
from django.core.exceptions import ValidationError

from actions.validators import refuse_invisible
from responseportal.models import Membership

from .tokens import DEFAULT_DAYS, MAX_DAYS

MAX_NAME_LENGTH = 100


class TokenForm(forms.Form):
    name = forms.CharField(
        max_length=MAX_NAME_LENGTH,
        help_text="What the token is for, e.g. “SOAR playbook”. The audit log names it.",
        error_messages={
            "required": "Give the token a name: the audit log names it in every change it makes.",
            "max_length": (f"The name is too long: expected at most {MAX_NAME_LENGTH} characters."),
            "null_characters_not_allowed": (
                "The name holds a NUL character (U+0000): expected printable text on one line."
            ),
        },
    )
    organization = forms.ChoiceField(
        help_text="The token acts in this organization only, with your role there.",
        error_messages={
            "required": "Choose the organization the token acts in.",
            "invalid_choice": (
                "`%(value)s` is not one of your organizations: expected one you are a member of."
            ),
        },
    )
    days = forms.IntegerField(
        label="Expires after (days)",
        initial=DEFAULT_DAYS,
        min_value=1,
        max_value=MAX_DAYS,
        error_messages={
            "required": f"Say how many days the token lasts: 1 to {MAX_DAYS}.",
            "invalid": f"Expected a whole number of days, 1 to {MAX_DAYS}.",
            "min_value": f"Expected a whole number of days, 1 to {MAX_DAYS}.",
            "max_value": f"A token lasts at most {MAX_DAYS} days: expected 1 to {MAX_DAYS}.",
        },
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.memberships = {
            m.organization.slug: m
            for m in Membership.objects.filter(user=user).select_related("organization")
        }
        self.fields["organization"].choices = [
            (slug, f"{m.organization.name} ({m.get_role_display().lower()})")
            for slug, m in self.memberships.items()
        ]
        self.helper = FormHelper()
        self.helper.form_tag = False

    def clean_name(self) -> str:
        name = refuse_invisible(self.cleaned_data["name"].strip())
        if not name.isprintable():
            raise ValidationError(
                "The name holds a line break or another control character: expected "
                "printable text on one line.",
                code="invalid",
            )
        if not name:
            raise ValidationError(self.fields["name"].error_messages["required"], code="required")
        return name

    def clean_organization(self):
        return self.memberships[self.cleaned_data["organization"]].organization

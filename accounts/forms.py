from django import forms

from responseportal.models import SecondFactorPolicy

from .factors import CODE_MAX_LENGTH


class CodeForm(forms.Form):
    """The second step of signing in: a code from the authenticator app, or a recovery code."""

    code = forms.CharField(
        label="Code",
        max_length=CODE_MAX_LENGTH,
        help_text="The 6-digit code your authenticator app shows, or one of your recovery codes.",
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "autofocus": True, "inputmode": "text"}
        ),
        error_messages={
            "required": "Type the code your authenticator app shows, or a recovery code.",
            "max_length": "This is longer than any code: expected 6 digits or a recovery code.",
            "null_characters_not_allowed": "This code holds a NUL character: expected digits.",
        },
    )


class TotpConfirmForm(CodeForm):
    pass


class PasskeyNameForm(forms.Form):
    name = forms.CharField(
        max_length=64,
        strip=True,
        error_messages={
            "required": "Name the passkey (e.g. “Work laptop”), to tell it apart later.",
            "max_length": "This name is %(show_value)d characters long: at most 64.",
        },
    )

    def clean_name(self) -> str:
        name = " ".join(self.cleaned_data["name"].split())
        if not name or not name.isprintable():
            raise forms.ValidationError(
                "This name holds invisible or control characters: use letters and digits."
            )
        return name


class SecondFactorPolicyForm(forms.Form):
    second_factor_policy = forms.ChoiceField(
        label="Second factor",
        choices=SecondFactorPolicy.choices,
        widget=forms.RadioSelect,
        error_messages={
            "invalid_choice": "“%(value)s” is not a policy: expected none, admins or everyone.",
            "required": "Choose who must have a second factor.",
        },
    )

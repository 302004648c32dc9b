"""The sign-in form, and the widgets of the pages' filter bars, styled once for every app."""

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.core.validators import MaxLengthValidator


class SignInForm(AuthenticationForm):
    """Django's sign-in form, with the username bounded before anyone looks it up.

    A failed sign-in is recorded under its username (django-axes' lockout table, 255
    characters; the audit log), so a username longer than any user's (150 characters) is
    refused as a form error, never handed to them.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        username = self.fields["username"]
        limit = username.max_length  # the user model's, set by AuthenticationForm
        username.validators.append(MaxLengthValidator(limit))
        username.error_messages |= {
            "max_length": (
                "This username is %(show_value)d characters long: expected a portal "
                f"username, at most {limit} characters."
            ),
            "null_characters_not_allowed": (
                "This username holds a NUL character (U+0000): expected a portal username."
            ),
        }


def text_input(**attrs) -> forms.TextInput:
    return forms.TextInput(attrs={"class": "form-control", **attrs})


def search_input() -> forms.TextInput:
    return text_input(type="search")


def select() -> forms.Select:
    return forms.Select(attrs={"class": "form-select"})

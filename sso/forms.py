"""The forms of single sign-on: the e-mail that picks an organization's provider, and the
registration of a provider by an admin of the organization."""

import re
import unicodedata
from urllib.parse import urlsplit

from django import forms
from django.core.validators import URLValidator

from responseportal.forms import text_input
from responseportal.models import Role

from .oidc import endpoint_problem
from .services import PROVIDER_FIELDS

# One label of a domain name as resolvers take it: letters, digits and inner hyphens.
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)", re.ASCII)
ROLE_NAMES = ", ".join(role.value for role in Role)


def _visible(text: str, what: str) -> str:
    """`text`, refused if it holds a control or an invisible (format) character."""
    for char in text:
        if unicodedata.category(char) in {"Cc", "Cf"} and char not in "\r\n\t":
            raise forms.ValidationError(
                f"The {what} holds an invisible character (U+{ord(char):04X}): type it again."
            )
    return text


def domain_name(text: str) -> str:
    """`text` as an ASCII, lower-case domain name (IDNA for international ones)."""
    name = text.strip().lower().removesuffix(".")
    try:
        ascii_name = name.encode("idna").decode("ascii") if not name.isascii() else name
    except UnicodeError:
        ascii_name = ""
    labels = ascii_name.split(".")
    if len(labels) < 2 or len(ascii_name) > 253 or not all(_LABEL.fullmatch(x) for x in labels):
        raise forms.ValidationError(
            f"`{text[:100]}` is not a domain name: expected one like example.com, one per line."
        )
    return ascii_name


class ProviderChoiceForm(forms.Form):
    """The e-mail address whose domain names the organization to sign in with."""

    email = forms.EmailField(
        label="Work e-mail address",
        max_length=254,
        widget=forms.EmailInput(attrs={"class": "form-control", "autocomplete": "email"}),
    )
    next = forms.CharField(required=False, max_length=2000, widget=forms.HiddenInput)

    def clean_email(self) -> str:
        email = _visible(self.cleaned_data["email"], "e-mail address")
        local, _, domain = email.rpartition("@")
        return f"{local}@{domain_name(domain)}"


class IdentityProviderForm(forms.Form):
    issuer = forms.CharField(
        max_length=500,
        widget=text_input(placeholder="https://login.example.com/realms/acme"),
        help_text="The issuer identifier; the portal reads /.well-known/openid-configuration "
        "under it.",
    )
    client_id = forms.CharField(label="Client ID", max_length=255, widget=text_input())
    client_secret = forms.CharField(
        label="Client secret",
        required=False,
        max_length=1000,
        strip=False,
        widget=forms.PasswordInput(
            render_value=False, attrs={"class": "form-control", "autocomplete": "off"}
        ),
        help_text="Never shown again once saved; leave empty to keep the saved one.",
    )
    allowed_domains = forms.CharField(
        label="Allowed e-mail domains",
        max_length=20_000,
        widget=forms.Textarea(attrs={"class": "form-control", "rows": 3}),
        help_text="One per line: only users whose address the provider gives at one of these "
        "domains sign in.",
    )
    groups_claim = forms.CharField(
        label="Group claim",
        max_length=100,
        initial="groups",
        widget=text_input(),
        help_text="The ID token claim that lists the user's groups.",
    )
    role_mapping = forms.CharField(
        label="Groups and roles",
        max_length=20_000,
        widget=forms.Textarea(attrs={"class": "form-control", "rows": 4}),
        help_text=f"One per line: group = role ({ROLE_NAMES}). A user in several mapped "
        "groups gets the strongest role: admin, then operator, then auditor.",
    )
    password_sign_in_disabled = forms.BooleanField(
        label="Switch password sign-in off for this organization's members",
        required=False,
    )
    amr_satisfies_step_up = forms.BooleanField(
        label="A multi-factor sign-in at the identity provider (amr claim) counts as a second "
        "factor",
        required=False,
    )
    version = forms.CharField(required=False, widget=forms.HiddenInput)

    def clean_issuer(self) -> str:
        issuer = _visible(self.cleaned_data["issuer"].strip(), "issuer")
        try:
            URLValidator(schemes=["https", "http"])(issuer)
        except forms.ValidationError:
            raise forms.ValidationError(
                f"`{issuer[:200]}` is not an issuer URL: expected e.g. "
                "https://login.example.com/realms/acme."
            ) from None
        parts = urlsplit(issuer)
        if parts.query or parts.fragment:
            raise forms.ValidationError("An issuer URL has no query (?…) or fragment (#…).")
        problem = endpoint_problem(issuer)
        if problem:
            raise forms.ValidationError(f"`{issuer[:200]}` {problem}.")
        return issuer

    def clean_client_id(self) -> str:
        return _visible(self.cleaned_data["client_id"].strip(), "client ID")

    def clean_client_secret(self) -> str:
        return _visible(self.cleaned_data["client_secret"], "client secret")

    def clean_allowed_domains(self) -> list[str]:
        text = _visible(self.cleaned_data["allowed_domains"], "list of domains")
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) > 50:
            raise forms.ValidationError(f"{len(lines)} domains: at most 50.")
        domains = list(dict.fromkeys(domain_name(line) for line in lines))
        if not domains:
            raise forms.ValidationError("Enter at least one domain.")
        return domains

    def clean_groups_claim(self) -> str:
        claim = _visible(self.cleaned_data["groups_claim"].strip(), "group claim")
        if not claim:
            raise forms.ValidationError("Enter the claim that lists the user's groups.")
        return claim

    def clean_role_mapping(self) -> dict[str, str]:
        text = _visible(self.cleaned_data["role_mapping"], "list of groups")
        mapping: dict[str, str] = {}
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            group, equals, role = (part.strip() for part in line.rpartition("="))
            if not equals or not group or role.lower() not in Role.values:
                raise forms.ValidationError(
                    f"Line {number}, `{line.strip()[:100]}`: expected `group = role`, the role "
                    f"one of {ROLE_NAMES}."
                )
            if len(group) > 200:
                raise forms.ValidationError(
                    f"Line {number}: a group name of {len(group)} characters; at most 200."
                )
            if group in mapping:
                raise forms.ValidationError(
                    f"Line {number}: group `{group[:100]}` is mapped twice."
                )
            mapping[group] = role.lower()
        if not mapping:
            raise forms.ValidationError("Map at least one group to a role.")
        if len(mapping) > 100:
            raise forms.ValidationError(f"{len(mapping)} groups: at most 100.")
        return mapping

    def values(self) -> dict:
        return {name: self.cleaned_data[name] for name in PROVIDER_FIELDS}

    @staticmethod
    def initial_for(provider) -> dict:
        if provider is None:
            return {"groups_claim": "groups", "version": ""}
        return {
            "issuer": provider.issuer,
            "client_id": provider.client_id,
            "allowed_domains": "\n".join(provider.allowed_domains),
            "groups_claim": provider.groups_claim,
            "role_mapping": "\n".join(
                f"{group} = {role}" for group, role in provider.role_mapping.items()
            ),
            "password_sign_in_disabled": provider.password_sign_in_disabled,
            "amr_satisfies_step_up": provider.amr_satisfies_step_up,
            "version": provider.updated_at.isoformat(),
        }

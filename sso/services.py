"""Changes single sign-on makes: an identity provider saved, a user signed in through it.

Each is one transaction that re-checks what it relies on, writes its audit events inside it,
and refuses with a TransitionRefused whose message is shown as it is.
"""

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.chain import record
from audit.context import AuditContext
from responseportal.models import Membership, Organization, Role
from responseportal.refusals import TransitionRefused

from . import secrets
from .models import ExternalIdentity, IdentityProvider

# What the audit log shows for the secret: that it changed, never what it is.
SECRET_SET, SECRET_UNCHANGED = "(set)", "(unchanged)"
PROVIDER_FIELDS = (
    "issuer",
    "client_id",
    "allowed_domains",
    "groups_claim",
    "role_mapping",
    "password_sign_in_disabled",
    "amr_satisfies_step_up",
)


class SignInRefused(TransitionRefused):
    """Single sign-on did not sign the user in; the message says why, for the user."""


def _actor_role(actor, organization: Organization) -> str:
    """The actor's role for changing the organization's sign-in: its admin, or a platform admin."""
    membership = (
        Membership.objects.select_for_update().filter(user=actor, organization=organization).first()
    )
    if membership is not None and membership.role == Role.ADMIN:
        return membership.role
    if actor.is_superuser:
        return "platform admin"
    raise TransitionRefused(
        f"Only an admin of {organization.name} or a platform admin changes its single sign-on."
    )


def save_identity_provider(
    organization: Organization,
    *,
    actor,
    values: dict,
    client_secret: str = "",
    version: str = "",
    context: AuditContext,
) -> IdentityProvider:
    """Register or change the organization's identity provider.

    `values` holds PROVIDER_FIELDS; an empty `client_secret` keeps the stored one (required
    for a new provider). `version` is the `updated_at` the form was opened at ("" for none),
    so a save over someone else's newer one is refused. Records `settings.changed` with each
    changed field before and after (the secret only as changed).
    """
    with transaction.atomic():
        role = _actor_role(actor, organization)
        provider = (
            IdentityProvider.objects.select_for_update().filter(organization=organization).first()
        )
        current_version = provider.updated_at.isoformat() if provider else ""
        if version != current_version:
            raise TransitionRefused(
                "Someone changed the single sign-on settings after you opened the page. "
                "Review the current settings and save again."
            )
        if provider is None:
            if not client_secret:
                raise TransitionRefused("Enter the client secret the identity provider gave you.")
            provider = IdentityProvider(organization=organization)
            before = {name: None for name in PROVIDER_FIELDS}
        else:
            before = {name: getattr(provider, name) for name in PROVIDER_FIELDS}
        if (
            values["password_sign_in_disabled"]
            and not before["password_sign_in_disabled"]
            and not actor.is_superuser
            and not ExternalIdentity.objects.filter(user=actor, issuer=values["issuer"]).exists()
        ):
            raise TransitionRefused(
                "Sign in once through this identity provider before switching password "
                "sign-in off, so that you cannot lock yourself out."
            )
        changes = {
            name: {"before": before[name], "after": values[name]}
            for name in PROVIDER_FIELDS
            if before[name] != values[name]
        }
        if client_secret:
            changes["client_secret"] = {
                "before": SECRET_SET if provider.pk else None,
                "after": SECRET_SET,
            }
            provider.client_secret_encrypted = secrets.encrypt(client_secret)
        if not changes:
            return provider
        for name in PROVIDER_FIELDS:
            setattr(provider, name, values[name])
        provider.save()
        record(
            organization,
            "settings.changed",
            actor=actor,
            role=role,
            data={"settings": "single sign-on", **changes},
            context=context,
        )
        return provider


@dataclass(frozen=True)
class Claims:
    """What sign-in uses of a verified ID token."""

    subject: str
    email: str
    groups: list[str]
    given_name: str = ""
    family_name: str = ""


def _new_username(email: str) -> str:
    User = get_user_model()
    candidate, number = email[:150], 1
    while User._default_manager.filter(username=candidate).exists():
        number += 1
        suffix = f"-{number}"
        candidate = email[: 150 - len(suffix)] + suffix
    return candidate


def _user_for(provider: IdentityProvider, claims: Claims):
    """The user the provider's subject is, created on their first sign-in."""
    identity = (
        ExternalIdentity.objects.select_for_update()
        .select_related("user")
        .filter(issuer=provider.issuer, subject=claims.subject)
        .first()
    )
    if identity is None:
        User = get_user_model()
        user = User(username=_new_username(claims.email), email=claims.email)
        user.set_unusable_password()
        user.first_name, user.last_name = claims.given_name[:150], claims.family_name[:150]
        user.save()
        identity = ExternalIdentity.objects.create(
            user=user, issuer=provider.issuer, subject=claims.subject, email=claims.email
        )
    user = identity.user
    if not user.is_active:
        raise SignInRefused("This portal account is disabled: ask a platform admin.")
    identity.email, identity.last_sign_in_at = claims.email, timezone.now()
    identity.save(update_fields=["email", "last_sign_in_at"])
    if user.email != claims.email:
        user.email = claims.email
        user.save(update_fields=["email"])
    return user


def _sync_membership(provider: IdentityProvider, user, role: str | None, context) -> None:
    """Make the user's membership of the provider's organization what the groups say."""
    organization = provider.organization
    membership = (
        Membership.objects.select_for_update().filter(user=user, organization=organization).first()
    )
    before = membership.role if membership else None
    if before == role:
        return
    if role is None:
        membership.delete()
        verb = "membership.removed"
    elif membership is None:
        Membership.objects.create(user=user, organization=organization, role=role)
        verb = "membership.created"
    else:
        membership.role = role
        membership.save(update_fields=["role"])
        verb = "membership.changed"
    record(
        organization,
        verb,
        actor=user,
        role=role or "",
        data={
            "user": user.get_username(),
            "role": {"before": before, "after": role},
            "by": "identity provider groups",
            "issuer": provider.issuer,
        },
        context=context,
    )


def sign_in(provider: IdentityProvider, claims: Claims, *, context: AuditContext):
    """The user a verified ID token names, with their membership brought in step with its
    groups; raises SignInRefused (after removing a membership the groups no longer give)."""
    domain = claims.email.rpartition("@")[2]
    if domain not in provider.allowed_domains:
        raise SignInRefused(
            f"The identity provider says your e-mail address is {claims.email}, but "
            f"{provider.organization.name} allows sign-in only for addresses at "
            f"{', '.join(provider.allowed_domains)}."
        )
    role = provider.role_for(claims.groups)
    for attempt in range(2):
        try:
            with transaction.atomic():
                user = _user_for(provider, claims)
                _sync_membership(provider, user, role, context)
            break
        except IntegrityError:
            # Two first sign-ins of one subject at once: the other created the user.
            if attempt:
                raise
    if role is None:
        shown = ", ".join(claims.groups) if claims.groups else "none"
        raise SignInRefused(
            f"Your identity provider gives you no role in {provider.organization.name}: none "
            f"of your groups ({shown}) is mapped to a portal role. Ask an admin of "
            f"{provider.organization.name}."
        )
    return user


def delete_identity_provider(organization: Organization, *, actor, context: AuditContext) -> None:
    """Remove the organization's identity provider (a platform admin, in the Django admin)."""
    with transaction.atomic():
        role = _actor_role(actor, organization)
        provider = (
            IdentityProvider.objects.select_for_update().filter(organization=organization).first()
        )
        if provider is None:
            return
        before = {name: getattr(provider, name) for name in PROVIDER_FIELDS}
        provider.delete()
        record(
            organization,
            "settings.changed",
            actor=actor,
            role=role,
            data={
                "settings": "single sign-on",
                **{name: {"before": value, "after": None} for name, value in before.items()},
                "client_secret": {"before": SECRET_SET, "after": None},
            },
            context=context,
        )

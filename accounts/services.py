"""Changes to a user's second factors and to an organization's two-factor policy.

Each is one transaction that writes its audit events (one in each of the user's
organizations, or on the platform chain for a user of none) and, after commit, tells the
user by e-mail.
"""

from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.chain import record
from audit.context import SYSTEM, AuditContext
from responseportal.models import Membership, Organization, SecondFactorPolicy
from responseportal.refusals import TransitionRefused

from .factors import (
    RECOVERY_DEVICE_NAME,
    TOTP_DEVICE_NAME,
    has_second_factor,
    normalized_code,
    organizations_requiring,
)
from .kinds import RECOVERY, TOTP, WEBAUTHN
from .models import Passkey

RECOVERY_CODE_COUNT = 10

KIND_NAMES = {
    TOTP: "an authenticator app",
    WEBAUTHN: "a passkey",
    RECOVERY: "recovery codes",
}


def _record_for_user(
    user, verb: str, *, by_the_system: bool = False, data: dict, context: AuditContext
) -> None:
    """One event in each of the user's organizations (ordered by id: no deadlock), or on the
    platform chain when they belong to none; the user is its actor unless `by_the_system`."""
    memberships = list(
        Membership.objects.filter(user=user)
        .select_related("organization")
        .order_by("organization_id")
    )
    for membership in memberships or [None]:
        record(
            membership.organization if membership else None,
            verb,
            actor=None if by_the_system else user,
            role=membership.role if membership and not by_the_system else "",
            data={"user": user.get_username(), **data},
            context=context,
        )


def _tell(user, subject: str, body: str) -> None:
    if user.email:
        transaction.on_commit(
            lambda: send_mail(
                f"Response Portal: {subject}",
                f"{body}\n\nIf this was not you, tell your organization's admins at once.\n",
                None,
                [user.email],
                fail_silently=True,
            )
        )


def _refuse_removing_the_last(user, removing: str) -> None:
    """A member whose organization requires a second factor keeps at least one."""
    if has_second_factor(user):
        return
    required_by = organizations_requiring(user)
    if required_by:
        names = ", ".join(sorted(o.name for o in required_by))
        raise TransitionRefused(
            f"{names} requires a second factor of you: add another one before removing {removing}."
        )


def start_totp(user) -> TOTPDevice:
    """A new authenticator-app secret to set up, not yet in use (a previous unconfirmed one
    is replaced: the page shows one secret at a time)."""
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user, confirmed=False).delete()
        return TOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=False)


@transaction.atomic
def confirm_totp(device_id: int, *, actor, code: str, context: AuditContext = SYSTEM) -> None:
    """Put the authenticator app in use once a code it shows matches its secret."""
    device = TOTPDevice.objects.select_for_update().filter(pk=device_id, user=actor).first()
    if device is None or device.confirmed:
        raise TransitionRefused(
            "This set-up is no longer current: open the Security page again for a new secret."
        )
    if TOTPDevice.objects.filter(user=actor, confirmed=True).exists():
        raise TransitionRefused(
            "You already have an authenticator app: remove it first to set up another."
        )
    digits = normalized_code(code)
    if not (digits.isascii() and digits.isdigit() and len(digits) == device.digits):
        raise TransitionRefused(
            f"Type the {device.digits}-digit code your authenticator app shows now."
        )
    if not device.verify_token(digits):
        raise TransitionRefused(
            "This code does not match: check that the app's clock is right and type the code "
            "it shows now."
        )
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    _record_for_user(actor, "second_factor.added", data={"kind": TOTP}, context=context)
    _tell(actor, "authenticator app added", "An authenticator app was added to your account.")


@transaction.atomic
def remove_totp(*, actor, context: AuditContext = SYSTEM) -> None:
    devices = TOTPDevice.objects.select_for_update().filter(user=actor, confirmed=True)
    if not devices:
        raise TransitionRefused("You have no authenticator app to remove.")
    devices.delete()
    _refuse_removing_the_last(actor, "your authenticator app")
    _record_for_user(actor, "second_factor.removed", data={"kind": TOTP}, context=context)
    _tell(actor, "authenticator app removed", "The authenticator app of your account was removed.")


@transaction.atomic
def add_passkey(
    *,
    actor,
    name: str,
    credential_id: str,
    public_key: bytes,
    sign_count: int,
    transports: list[str],
    context: AuditContext = SYSTEM,
) -> Passkey:
    if Passkey.objects.filter(credential_id=credential_id).exists():
        raise TransitionRefused("This passkey is already registered.")
    passkey = Passkey.objects.create(
        user=actor,
        name=name,
        credential_id=credential_id,
        public_key=public_key,
        sign_count=sign_count,
        transports=transports,
    )
    _record_for_user(
        actor, "second_factor.added", data={"kind": WEBAUTHN, "name": name}, context=context
    )
    _tell(actor, "passkey added", f"The passkey “{name}” was added to your account.")
    return passkey


@transaction.atomic
def remove_passkey(passkey_id: int, *, actor, context: AuditContext = SYSTEM) -> None:
    passkey = Passkey.objects.select_for_update().filter(pk=passkey_id, user=actor).first()
    if passkey is None:
        raise TransitionRefused("This passkey was already removed.")
    passkey.delete()
    _refuse_removing_the_last(actor, f"the passkey “{passkey.name}”")
    _record_for_user(
        actor,
        "second_factor.removed",
        data={"kind": WEBAUTHN, "name": passkey.name},
        context=context,
    )
    _tell(actor, "passkey removed", f"The passkey “{passkey.name}” was removed from your account.")


def _formatted(token: str) -> str:
    return "-".join(token[i : i + 4] for i in range(0, len(token), 4))


@transaction.atomic
def generate_recovery_codes(*, actor, context: AuditContext = SYSTEM) -> list[str]:
    """New recovery codes, replacing any earlier ones; returned once, to be shown once."""
    if not has_second_factor(actor):
        raise TransitionRefused(
            "Recovery codes stand in for an authenticator app or a passkey: add one first."
        )
    device, _ = StaticDevice.objects.select_for_update().get_or_create(
        user=actor, name=RECOVERY_DEVICE_NAME, defaults={"confirmed": True}
    )
    device.token_set.all().delete()
    tokens = [StaticToken.random_token() for _ in range(RECOVERY_CODE_COUNT)]
    StaticToken.objects.bulk_create(StaticToken(device=device, token=t) for t in tokens)
    _record_for_user(
        actor,
        "recovery_codes.generated",
        data={"kind": RECOVERY, "count": RECOVERY_CODE_COUNT},
        context=context,
    )
    _tell(
        actor,
        "new recovery codes",
        "New recovery codes were made for your account; the earlier ones no longer work.",
    )
    return [_formatted(t) for t in tokens]


def recovery_codes_left(user) -> int:
    return StaticToken.objects.filter(device__user=user, device__name=RECOVERY_DEVICE_NAME).count()


@transaction.atomic
def reset_second_factors(user, *, reason: str, by: str) -> list[str]:
    """A platform admin's last resort, for a user who lost every factor: remove them all.
    The kinds removed are returned and recorded with the reason and who did it."""
    removed = []
    if TOTPDevice.objects.filter(user=user).delete()[0]:
        removed.append(TOTP)
    if Passkey.objects.filter(user=user).delete()[0]:
        removed.append(WEBAUTHN)
    if StaticDevice.objects.filter(user=user).delete()[0]:
        removed.append(RECOVERY)
    _record_for_user(
        user,
        "second_factor.reset",
        by_the_system=True,
        data={"removed": removed, "reason": reason, "by": by},
        context=SYSTEM,
    )
    _tell(
        user,
        "second factors reset",
        "A platform administrator removed every second factor of your account "
        f"(reason: {reason}). Set up a new one on the Security page after signing in.",
    )
    return removed


@transaction.atomic
def change_second_factor_policy(
    organization_id: int, *, actor, policy: str, context: AuditContext = SYSTEM
) -> Organization:
    organization = Organization.objects.select_for_update().get(pk=organization_id)
    before = organization.second_factor_policy
    if policy not in SecondFactorPolicy.values:
        raise TransitionRefused(
            f"{policy!r} is not a policy: expected one of {', '.join(SecondFactorPolicy.values)}."
        )
    if policy == before:
        return organization
    organization.second_factor_policy = policy
    role = (
        Membership.objects.filter(user=actor, organization=organization)
        .values_list("role", flat=True)
        .first()
    )
    if organization.requires_second_factor(role or "") and not has_second_factor(actor):
        raise TransitionRefused(
            "This policy would require a second factor of you, and you have none: set one up "
            "on your Security page first."
        )
    organization.save(update_fields=["second_factor_policy"])
    record(
        organization,
        "organization.second_factor_policy_changed",
        actor=actor,
        role=role or "",
        data={"before": before, "after": policy},
        context=context,
    )
    return organization


def touch_passkey(passkey: Passkey, sign_count: int) -> None:
    Passkey.objects.filter(pk=passkey.pk).update(sign_count=sign_count, last_used_at=timezone.now())

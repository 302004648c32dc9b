"""Making, revoking and recognizing API tokens.

A secret is `rp_` followed by 43 URL-safe base64 characters (32 random bytes, 256 bits): the
prefix lets secret scanners find a leaked one. Only its SHA-256 is stored.
"""

import hashlib
import re
import secrets
from datetime import timedelta

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import F, FilteredRelation, Q
from django.utils import timezone

from audit.chain import record
from audit.context import SYSTEM, AuditContext
from responseportal.models import Membership, Organization, Role
from responseportal.refusals import TransitionRefused

from .models import ApiToken

PREFIX = "rp_"
RANDOM_BYTES = 32
SECRET_PATTERN = re.compile(r"rp_[A-Za-z0-9_-]{43}", re.ASCII)
HINT_LENGTH = 8  # "rp_" and five characters
DEFAULT_DAYS = 90
MAX_DAYS = 365


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(RANDOM_BYTES)


def create_token(
    user,
    organization: Organization,
    *,
    name: str,
    days: int = DEFAULT_DAYS,
    context: AuditContext = SYSTEM,
) -> tuple[ApiToken, str]:
    """A new token of `user` in `organization` and its secret, which is shown once and never
    stored. The user must be a member of the organization; any role may hold a token."""
    if not 1 <= days <= MAX_DAYS:
        raise TransitionRefused(
            f"{days} days is not a valid lifetime: expected 1 to {MAX_DAYS} days."
        )
    with transaction.atomic():
        role = (
            Membership.objects.filter(user=user, organization=organization)
            .values_list("role", flat=True)
            .first()
        )
        if role is None:
            raise PermissionDenied(
                f"{user.get_username()} is not a member of {organization.name}: a token acts "
                "only in an organization its user belongs to."
            )
        secret = new_secret()
        now = timezone.now()
        token = ApiToken.objects.create(
            user=user,
            organization=organization,
            name=name,
            secret_hash=hash_secret(secret),
            hint=secret[:HINT_LENGTH],
            created_at=now,
            expires_at=now + timedelta(days=days),
        )
        record(
            organization,
            "api_token.created",
            actor=user,
            role=role,
            data=_described(token),
            context=context,
        )
    return token, secret


def revoke_token(token_id: int, *, actor, context: AuditContext = SYSTEM) -> ApiToken:
    """Revoke a token: its owner may, and so may an admin of its organization."""
    with transaction.atomic():
        token = (
            ApiToken.objects.select_for_update()
            .select_related("organization", "user")
            .get(pk=token_id)
        )
        role = (
            Membership.objects.filter(user=actor, organization=token.organization)
            .values_list("role", flat=True)
            .first()
        )
        if token.user_id != actor.pk and role != Role.ADMIN:
            raise PermissionDenied(
                "Only the token's owner or an admin of its organization can revoke it."
            )
        if token.revoked_at is not None:
            raise TransitionRefused(
                f"The token {token.name} was already revoked at "
                f"{token.revoked_at:%Y-%m-%d %H:%M} UTC."
            )
        token.revoked_at = timezone.now()
        token.revoked_by = actor
        token.save(update_fields=["revoked_at", "revoked_by"])
        record(
            token.organization,
            "api_token.revoked",
            actor=actor,
            role=role or "",
            data=_described(token),
            context=context,
        )
    return token


def _described(token: ApiToken) -> dict:
    return {
        "token": token.name,
        "hint": token.hint,
        "owner": token.user.get_username(),
        "expires_at": token.expires_at.isoformat(),
    }


def find_token(secret: str) -> ApiToken | None:
    """The token whose secret this is (revoked and expired ones too), or None.

    One statement also reads its user's membership of its organization now: `membership`,
    None once they have left it (the token then acts nowhere).
    """
    try:
        token = (
            ApiToken.objects.select_related("user", "organization")
            .annotate(
                member=FilteredRelation(
                    "user__memberships",
                    condition=Q(user__memberships__organization=F("organization")),
                ),
                membership_pk=F("member__pk"),
                membership_role=F("member__role"),
                membership_created_at=F("member__created_at"),
            )
            .get(secret_hash=hash_secret(secret))
        )
    except ApiToken.DoesNotExist:
        return None
    token.membership = None
    if token.membership_pk is not None:
        token.membership = Membership(
            pk=token.membership_pk,
            user=token.user,
            organization=token.organization,
            role=token.membership_role,
            created_at=token.membership_created_at,
        )
    return token


# The last use is shown to the minute: a token used again within it from the same address
# keeps the time recorded, and its request writes nothing.
LAST_USE_PRECISION = timedelta(minutes=1)


def record_use(token: ApiToken, address: str | None) -> None:
    """Note the token's last use (time and address): written when the address changed or the
    recorded time is older than LAST_USE_PRECISION."""
    now = timezone.now()
    if (
        token.last_used_ip == address
        and token.last_used_at is not None
        and now - token.last_used_at < LAST_USE_PRECISION
    ):
        return
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=now, last_used_ip=address)
    token.last_used_at, token.last_used_ip = now, address

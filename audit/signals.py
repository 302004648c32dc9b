"""Sign-in, sign-out and failed sign-in, recorded in the audit log of each of the user's
organizations (or on the platform chain when the user belongs to none, or does not exist)."""

from axes.signals import user_locked_out
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db import transaction
from django.dispatch import receiver

from responseportal.models import Membership

from .chain import record
from .context import SYSTEM, AuditContext


def _context(request) -> AuditContext:
    return AuditContext.from_request(request) if request is not None else SYSTEM


def _record_everywhere(user, verb: str, request, *, actor_username=None, data=None) -> None:
    # In the order of the organizations' ids, so that two sign-ins cannot deadlock.
    memberships = list(
        Membership.objects.filter(user=user)
        .select_related("organization")
        .order_by("organization_id")
    )
    context = _context(request)
    with transaction.atomic():
        for membership in memberships or [None]:
            record(
                membership.organization if membership else None,
                verb,
                # A failed sign-in has no actor: only the username someone tried.
                actor=user if actor_username is None else None,
                actor_username=actor_username,
                role=membership.role if membership and actor_username is None else "",
                data=data,
                context=context,
            )


@receiver(user_logged_in, dispatch_uid="audit_signed_in")
def signed_in(sender, request, user, **kwargs) -> None:
    _record_everywhere(user, "auth.signed_in", request)


@receiver(user_logged_out, dispatch_uid="audit_signed_out")
def signed_out(sender, request, user, **kwargs) -> None:
    if user is not None:  # signing out without being signed in changes nothing
        _record_everywhere(user, "auth.signed_out", request)


@receiver(user_login_failed, dispatch_uid="audit_sign_in_failed")
def sign_in_failed(sender, credentials, request=None, **kwargs) -> None:
    User = get_user_model()
    tried = str(credentials.get(User.USERNAME_FIELD, ""))
    data = {"username": tried}
    user = User._default_manager.filter(**{User.USERNAME_FIELD: tried}).first() if tried else None
    if user is None:
        record(
            None, "auth.sign_in_failed", actor_username=tried, data=data, context=_context(request)
        )
    else:
        _record_everywhere(user, "auth.sign_in_failed", request, actor_username=tried, data=data)


@receiver(user_locked_out, dispatch_uid="audit_locked_out")
def locked_out(sender, request, username, ip_address, **kwargs) -> None:
    """Too many failed sign-ins for one username from one address: sign-in is refused a while."""
    User = get_user_model()
    user = User._default_manager.filter(**{User.USERNAME_FIELD: username}).first()
    data = {"username": username, "ip_address": ip_address}
    if user is None:
        record(
            None, "auth.locked_out", actor_username=username, data=data, context=_context(request)
        )
    else:
        _record_everywhere(user, "auth.locked_out", request, actor_username=username, data=data)

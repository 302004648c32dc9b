"""Sign-in, sign-out and failed sign-in, recorded in the audit log of each of the user's
organizations (or on the platform chain when the user belongs to none, or does not exist).

What anonymous traffic appends is bounded (see `audit.flood`): an attempt refused during a
lockout is only counted, and failed sign-ins and lockouts pass per-address and overall gates.
Recording never breaks signing in or out: a chain that refuses new events (AuditLogJammed,
alerted where it is raised) loses that one event, and the others are written.
"""

from axes.signals import user_locked_out
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db import transaction
from django.dispatch import receiver

from responseportal.models import Membership

from .chain import AuditLogJammed, chain_of, record
from .context import SYSTEM, AuditContext
from .flood import Gate, admit, failure_gates, lockout_gates, write_ended_counts
from .models import Source

# As long as a username can be (Django's User.username).
USERNAME_LENGTH = 150


def _context(request) -> AuditContext:
    if request is None:
        return SYSTEM
    # A sign-in through an identity provider says so (sso.views sets it before login()).
    return AuditContext.from_request(request, getattr(request, "audit_source", Source.WEB))


def _user_named(username: str):
    User = get_user_model()
    if not username or "\x00" in username or len(username) > USERNAME_LENGTH:
        return None  # no user has such a name, and the database could not even compare it
    return User._default_manager.filter(**{User.USERNAME_FIELD: username}).first()


def _as_recorded(username: str) -> str:
    return username.replace("\x00", "")[:USERNAME_LENGTH]


def _record_everywhere(
    user, verb: str, request, *, actor_username=None, data=None, gates: list[Gate] | None = None
) -> None:
    """One event in each of the user's organizations (the platform chain without one, or
    without a user), each past the `gates` if given."""
    # In the order of the organizations' ids, so that two sign-ins cannot deadlock.
    memberships = (
        list(
            Membership.objects.filter(user=user)
            .select_related("organization")
            .order_by("organization_id")
        )
        if user is not None
        else []
    )
    context = _context(request)
    with transaction.atomic():
        for membership in memberships or [None]:
            organization = membership.organization if membership else None
            try:
                with transaction.atomic():
                    if gates is not None and not admit(chain_of(organization), gates):
                        continue
                    record(
                        organization,
                        verb,
                        # A failed sign-in has no actor: only the username someone tried.
                        actor=user if actor_username is None else None,
                        actor_username=actor_username,
                        role=membership.role if membership and actor_username is None else "",
                        data=data,
                        context=context,
                    )
            except AuditLogJammed:
                continue  # alerted by `append`; signing in or out goes on


def _refused_while_locked_out(request) -> bool:
    """Axes refused the attempt before any password was checked: the pair is locked out.

    Axes marks the request locked out before the signal in that case only (with
    AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT off); an attempt that fails and starts a
    lockout is also marked, but only after axes counted its failure.
    """
    return bool(
        getattr(request, "axes_locked_out", False)
        and getattr(request, "axes_failures_since_start", None) is None
    )


@receiver(user_logged_in, dispatch_uid="audit_signed_in")
def signed_in(sender, request, user, **kwargs) -> None:
    write_ended_counts()
    _record_everywhere(user, "auth.signed_in", request)


@receiver(user_logged_out, dispatch_uid="audit_signed_out")
def signed_out(sender, request, user, **kwargs) -> None:
    if user is not None:  # signing out without being signed in changes nothing
        _record_everywhere(user, "auth.signed_out", request)


@receiver(user_login_failed, dispatch_uid="audit_sign_in_failed")
def sign_in_failed(sender, credentials, request=None, **kwargs) -> None:
    if request is not None and _refused_while_locked_out(request):
        return  # counted as an attempt during the lockout (see `locked_out`)
    write_ended_counts()
    User = get_user_model()
    tried = str(credentials.get(User.USERNAME_FIELD, ""))
    _record_everywhere(
        _user_named(tried),
        "auth.sign_in_failed",
        request,
        actor_username=_as_recorded(tried),
        data={"username": _as_recorded(tried)},
        gates=failure_gates(_context(request).ip_address),
    )


@receiver(user_locked_out, dispatch_uid="audit_locked_out")
def locked_out(sender, request, username, ip_address, **kwargs) -> None:
    """Too many failed sign-ins for one username from one address: sign-in is refused a while.
    Recorded once per lockout; the attempts refused while it lasts are counted."""
    write_ended_counts()
    username = str(username or "")
    recorded = _as_recorded(username)
    _record_everywhere(
        _user_named(username),
        "auth.locked_out",
        request,
        actor_username=recorded,
        data={"username": recorded, "ip_address": ip_address},
        gates=lockout_gates(recorded, ip_address),
    )

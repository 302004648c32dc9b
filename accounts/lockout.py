"""Wrong second-factor codes count towards the sign-in lockout (django-axes), wherever they
are typed: on the code step of signing in and on the step-up page."""

from axes.handlers.proxy import AxesProxyHandler
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_login_failed
from django.http import HttpRequest


def _credentials(user) -> dict:
    return {get_user_model().USERNAME_FIELD: user.get_username()}


def locked_out(request: HttpRequest, user) -> bool:
    """Whether axes refuses this user's username from this address; if so the attempt is
    counted as one during the lockout, and AxesMiddleware answers with the lockout page."""
    credentials = _credentials(user)
    if AxesProxyHandler.is_allowed(request, credentials):
        return False
    request.axes_locked_out = True
    user_login_failed.send(sender=__name__, credentials=credentials, request=request)
    return True


def count_failure(request: HttpRequest, user) -> None:
    """A wrong code counts towards the lockout like a wrong password (and is audited so)."""
    user_login_failed.send(sender=__name__, credentials=_credentials(user), request=request)

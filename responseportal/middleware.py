"""Times in each user's own time zone, and sessions that end after a while without use."""

import time
import zoneinfo
from collections.abc import Callable
from urllib.parse import unquote

from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

TIME_ZONE_COOKIE = "tz"


def user_time_zone(get_response: Callable[[HttpRequest], HttpResponse]):
    def middleware(request: HttpRequest) -> HttpResponse:
        name = unquote(request.COOKIES.get(TIME_ZONE_COOKIE, ""))
        zone = None
        if 0 < len(name) <= 64:
            try:
                zone = zoneinfo.ZoneInfo(name)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                zone = None
        if zone is None:
            timezone.deactivate()
        else:
            timezone.activate(zone)
        request.time_zone = timezone.get_current_timezone_name()
        return get_response(request)

    return middleware


SEEN_KEY = "seen"
REFRESH_EVERY = 60  # seconds


def refresh_idle_session(get_response: Callable[[HttpRequest], HttpResponse]):
    """Keep an active session alive, writing it at most once a minute.

    A session ends SESSION_COOKIE_AGE seconds after it was last written, so a user idle that
    long must sign in again, while pages that poll do not write the session on every request.
    """

    def middleware(request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated:
            now = int(time.time())
            if now - request.session.get(SEEN_KEY, 0) >= REFRESH_EVERY:
                request.session[SEEN_KEY] = now
        return get_response(request)

    return middleware


@receiver(user_logged_in, dispatch_uid="session_seen_at_sign_in")
def seen_at_sign_in(sender, request, user, **kwargs) -> None:
    if request is not None and hasattr(request, "session"):
        request.session[SEEN_KEY] = int(time.time())

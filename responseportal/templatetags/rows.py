"""For the tags that build a busy page's rows in Python rather than in a template loop (the
audit log, a request's targets and timeline, the pending queue): values escaped as a template
escapes them, times as `_time.html` shows them, and a URL reversed once for every row."""

from datetime import datetime
from html import escape

from django.urls import reverse
from django.utils import timezone
from django.utils.timesince import timesince

# `_time.html`'s formats, in strftime's words.
TO_THE_SECOND = "%Y-%m-%d %H:%M:%S"
TO_THE_SECOND_WITH_ZONE = "%Y-%m-%d %H:%M:%S %Z"
TO_THE_MINUTE_WITH_ZONE = "%Y-%m-%d %H:%M %Z"


def text(value) -> str:
    """`value` escaped as `{{ value }}` escapes it (Django's own escape is this one, with more
    calls around it), unless it is already HTML."""
    return value.__html__() if hasattr(value, "__html__") else escape(str(value))


def time_element(moment: datetime, shown: str = TO_THE_SECOND_WITH_ZONE, *, since=False) -> str:
    """`{% include "_time.html" with moment=… %}`: `moment` in the current time zone, in the
    format `shown`, or as the time since then with the moment itself as the title."""
    local = timezone.localtime(moment)
    if since:
        return (
            f'<time datetime="{local.isoformat()}" title="{local:{TO_THE_SECOND_WITH_ZONE}}">'
            f"{text(timesince(moment))}</time>"
        )
    return f'<time datetime="{local.isoformat()}">{local:{shown}}</time>'


class UrlPattern:
    """The URL `name` reversed once with a placeholder as its last argument; `url(value)` is the
    same URL with `value` as that argument, without reversing it again for each row."""

    def __init__(self, name: str, *args, placeholder):
        reversed_url = reverse(name, args=[*args, placeholder])
        self.head, _, tail = reversed_url.rpartition(f"/{placeholder}/")
        self.head, self.tail = f"{self.head}/", f"/{tail}"

    def url(self, value) -> str:
        return f"{self.head}{value}{self.tail}"

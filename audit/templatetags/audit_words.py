import uuid
from html import escape

from django import template
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from ..describe import Line, in_words
from ..models import Source

register = template.Library()


@register.simple_tag(name="in_words")
def in_words_tag(events) -> list[Line]:
    """`{% in_words events as lines %}`: each event with its sentence (`line.sentence`)."""
    return in_words(events)


# One row of the audit log's table, as `_time.html` and the template's loop wrote it. Built
# here, the 50 rows of a page cost about a tenth of what the loop did (an include, two {% url %}
# and two date filters per row): most of what the page added to its SQL.
LOG_ROW = (
    '<tr>\n    <td class="text-nowrap"><time datetime="{iso}">{moment}</time></td>\n'
    '    <td class="text-break">{sentence}\n'
    '      <div class="small text-body-secondary"><code>{verb}</code>{detail}</div></td>\n'
    "    <td>{request}</td>\n"
    "    <td>{source}{address}</td>\n"
    '    <td><a href="{event_url}" aria-label="Event {sequence}: details">#{sequence}</a></td>\n'
    "  </tr>\n"
)
_NO_REQUEST = str(uuid.UUID(int=0))
SOURCES = dict(Source.choices)


def _between(url: str, placeholder: str) -> tuple[str, str]:
    """`url` reversed once with `placeholder` as its last argument, split around it, so that
    each row's URL is the two halves around its own value."""
    head, _, tail = url.rpartition(f"/{placeholder}/")
    return f"{head}/", f"/{tail}"


def _text(value) -> str:
    """`value` escaped as `{{ value }}` escapes it (Django's own escape is this, with more
    calls around it), unless it is already HTML."""
    return value.__html__() if hasattr(value, "__html__") else escape(str(value))


@register.simple_tag
def log_rows(lines: list[Line], slug: str) -> SafeString:
    """`{% log_rows lines organization.slug %}`: the table rows of the audit log, each value
    escaped as a template would."""
    request_head, request_tail = _between(
        reverse("request_detail", args=[slug, _NO_REQUEST]), _NO_REQUEST
    )
    event_head, event_tail = _between(reverse("audit_event", args=[slug, 0]), "0")
    zone = timezone.get_current_timezone()
    rows = []
    for line in lines:
        event = line.event
        moment = event.timestamp.astimezone(zone)
        detail = ""
        if event.action_key:
            detail += f" · <code>{_text(event.action_key)}</code>"
        if event.actor_username:
            detail += f" · {_text(event.actor_username)}"
            if event.role:
                detail += f" ({_text(event.role)})"
        shown_request = ""
        if event.request_id is not None:
            request_uuid = str(event.request.uuid)
            shown_request = (
                f'<a href="{request_head}{request_uuid}{request_tail}" title="{request_uuid}">'
                f"<code>{request_uuid[:8]}</code></a>"
            )
        address = ""
        if event.ip_address:
            address = (
                '<br><span class="small text-body-secondary text-break">'
                f"{_text(event.ip_address)}</span>"
            )
        rows.append(
            LOG_ROW.format(
                iso=moment.isoformat(),
                moment=moment.strftime("%Y-%m-%d %H:%M:%S"),
                sentence=_text(line.sentence),
                verb=_text(event.verb),
                detail=detail,
                request=shown_request,
                source=_text(SOURCES.get(event.source, event.source)),
                address=address,
                event_url=f"{event_head}{event.pk}{event_tail}",
                sequence=event.sequence,
            )
        )
    return mark_safe("".join(rows))  # noqa: S308 (every value above is escaped)


# One event of a request's timeline, as `_time.html` (to the second, with the zone) and the
# template's loop wrote it.
TIMELINE_ITEM = (
    '<li class="list-group-item">\n'
    '    <time datetime="{iso}">{moment}</time> ·\n'
    "    <strong>{sentence}</strong>\n"
    "    {reason}\n"
    '    <div class="small text-body-secondary"><code>{verb}</code>{detail} · via {source}'
    "{address}</div>\n"
    "  </li>\n"
)


@register.simple_tag
def timeline_items(lines: list[Line]) -> SafeString:
    """`{% timeline_items lines %}`: a request's events as list items, each value escaped as a
    template would."""
    zone = timezone.get_current_timezone()
    items = []
    for line in lines:
        event = line.event
        moment = event.timestamp.astimezone(zone)
        reason = event.data.get("reason") if isinstance(event.data, dict) else None
        detail = ""
        if event.action_key:
            detail += f" · <code>{_text(event.action_key)}</code>"
        if event.role:
            detail += f" · {_text(event.actor_username)} ({_text(event.role)})"
        items.append(
            TIMELINE_ITEM.format(
                iso=moment.isoformat(),
                moment=f"{moment:%Y-%m-%d %H:%M:%S} {moment.tzname()}",
                sentence=_text(line.sentence),
                reason=f'<div class="small text-break">Reason: {_text(reason)}</div>'
                if reason
                else "",
                verb=_text(event.verb),
                detail=detail,
                source=_text(SOURCES.get(event.source, event.source).lower()),
                address=f" from {_text(event.ip_address)}" if event.ip_address else "",
            )
        )
    return mark_safe("".join(items))  # noqa: S308 (every value above is escaped)

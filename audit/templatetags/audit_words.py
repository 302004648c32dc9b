import uuid

from django import template
from django.utils.safestring import SafeString, mark_safe

from responseportal.templatetags.rows import TO_THE_SECOND, UrlPattern, text, time_element

from ..describe import Line, in_words
from ..models import Source

register = template.Library()


@register.simple_tag(name="in_words")
def in_words_tag(events) -> list[Line]:
    """`{% in_words events as lines %}`: each event with its sentence (`line.sentence`)."""
    return in_words(events)


SOURCES = dict(Source.choices)
# One row of the audit log's table, as the template's loop wrote it. Built here, the 50 rows
# of a page cost about a tenth of what the loop did (an include, two {% url %} and two date
# filters per row): most of what the page added to its SQL.
LOG_ROW = (
    '<tr>\n    <td class="text-nowrap">{moment}</td>\n'
    '    <td class="text-break">{sentence}\n'
    '      <div class="small text-body-secondary"><code>{verb}</code>{detail}</div></td>\n'
    "    <td>{request}</td>\n"
    "    <td>{source}{address}</td>\n"
    '    <td><a href="{event_url}" aria-label="Event {sequence}: details">#{sequence}</a></td>\n'
    "  </tr>\n"
)


@register.simple_tag
def log_rows(lines: list[Line], slug: str) -> SafeString:
    """`{% log_rows lines organization.slug %}`: the table rows of the audit log, each value
    escaped as a template would."""
    requests = UrlPattern("request_detail", slug, placeholder=uuid.UUID(int=0))
    events = UrlPattern("audit_event", slug, placeholder=0)
    rows = []
    for line in lines:
        event = line.event
        detail = ""
        if event.action_key:
            detail += f" · <code>{text(event.action_key)}</code>"
        if event.actor_username:
            detail += f" · {text(event.actor_username)}"
            if event.role:
                detail += f" ({text(event.role)})"
        shown_request = ""
        if event.request_id is not None:
            request_uuid = str(event.request.uuid)
            shown_request = (
                f'<a href="{requests.url(request_uuid)}" title="{request_uuid}">'
                f"<code>{request_uuid[:8]}</code></a>"
            )
        address = ""
        if event.ip_address:
            address = (
                '<br><span class="small text-body-secondary text-break">'
                f"{text(event.ip_address)}</span>"
            )
        rows.append(
            LOG_ROW.format(
                moment=time_element(event.timestamp, TO_THE_SECOND),
                sentence=text(line.sentence),
                verb=text(event.verb),
                detail=detail,
                request=shown_request,
                source=text(SOURCES.get(event.source, event.source)),
                address=address,
                event_url=events.url(event.pk),
                sequence=event.sequence,
            )
        )
    return mark_safe("".join(rows))  # noqa: S308 (every value above is escaped)


# One event of a request's timeline, as the template's loop wrote it.
TIMELINE_ITEM = (
    '<li class="list-group-item">\n'
    "    {moment} ·\n"
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
    items = []
    for line in lines:
        event = line.event
        reason = event.data.get("reason") if isinstance(event.data, dict) else None
        detail = ""
        if event.action_key:
            detail += f" · <code>{text(event.action_key)}</code>"
        if event.role:
            detail += f" · {text(event.actor_username)} ({text(event.role)})"
        items.append(
            TIMELINE_ITEM.format(
                moment=time_element(event.timestamp),
                sentence=text(line.sentence),
                reason=f'<div class="small text-break">Reason: {text(reason)}</div>'
                if reason
                else "",
                verb=text(event.verb),
                detail=detail,
                source=text(SOURCES.get(event.source, event.source).lower()),
                address=f" from {text(event.ip_address)}" if event.ip_address else "",
            )
        )
    return mark_safe("".join(items))  # noqa: S308 (every value above is escaped)

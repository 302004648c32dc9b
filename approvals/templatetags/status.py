import uuid

from django import template
from django.template.defaultfilters import linebreaksbr
from django.utils.safestring import SafeString, mark_safe

from responseportal.templatetags.rows import (
    TO_THE_MINUTE_WITH_ZONE,
    UrlPattern,
    text,
    time_element,
)

from ..icons import STATUS_ICONS, TARGET_ICONS
from ..models import ApprovalMode, TargetStatus

register = template.Library()


@register.filter
def status_icon(status: str) -> str:
    return STATUS_ICONS.get(status, "➜")


@register.filter
def target_icon(status: str) -> str:
    return TARGET_ICONS.get(status, "◔")


# One row of a request's targets table, as the template's loop wrote it. A request has up to
# 100 targets: built here, its rows cost a fraction of the loop's.
TARGET_ROW = (
    '<tr data-position="{position}"><td>{counter}</td><td>{kind}</td>'
    '<td class="text-break"><code>{value}</code></td>\n'
    '    <td data-field="status"><span class="status status-{status}">'
    '<span aria-hidden="true">{icon}</span> {label}</span></td>\n'
    '    <td class="text-break" data-field="message">{message}</td></tr>\n'
)
TARGET_LABELS = dict(TargetStatus.choices)


@register.simple_tag
def target_rows(targets) -> SafeString:
    """`{% target_rows targets %}`: the rows of a request's targets table, numbered from 1,
    each value escaped as a template would."""
    return mark_safe(  # noqa: S308 (every value is escaped)
        "".join(
            TARGET_ROW.format(
                position=target.position,
                counter=counter,
                kind=text(target.kind),
                value=text(target.value),
                status=text(target.status),
                icon=text(target_icon(target.status)),
                label=text(TARGET_LABELS.get(target.status, target.status)),
                message=text(target.message),
            )
            for counter, target in enumerate(targets, start=1)
        )
    )


# One row of the pending queue, as the template's loop and its includes (`_time.html`,
# `_targets.html`, `_status.html`) wrote it: 50 rows a page, each with five includes and a
# {% url %}, were most of the page's time.
QUEUE_ROW = (
    "<tr>\n"
    "      <td>{select}</td>\n"
    "      <td>{waiting}</td>\n"
    '      <td><a href="{url}">{action}</a></td>\n'
    '      <td class="targets">{targets}</td>\n'
    "      <td>{requester}</td>\n"
    "      <td>{status}</td>\n"
    "      <td><details><summary>Show</summary>\n"
    '        <div class="small text-break">{summary}</div>\n'
    "        {expires}\n"
    "      </details></td>\n"
    "    </tr>\n"
)


def _status(action_request) -> str:
    """`_status.html`, and how many approvals a pending request still needs."""
    shown = action_request.shown_status
    html = (
        f'<span class="status status-{text(shown.value)}"><span aria-hidden="true">'
        f"{text(status_icon(shown))}</span> {text(shown.label)}</span>"
    )
    if action_request.is_pending and action_request.approval_mode == ApprovalMode.MANUAL:
        needed, to_go = action_request.approvals_needed, action_request.approvals_to_go
        given = f"{action_request.approvals_given} of {needed} approvals; " if needed > 1 else ""
        html += (
            '<div class="small text-body-secondary approvals-to-go">'
            f"{given}needs {to_go} more approval{'' if to_go == 1 else 's'}</div>"
        )
    return html


def _targets(action_request) -> str:
    """`_targets.html`: the first targets, and how many more there are."""
    html = ", ".join(
        f"<code>{text(target.value)}</code>" for target in action_request.first_targets
    )
    if action_request.more_targets:
        html += f' <span class="text-body-secondary">and {action_request.more_targets} more</span>'
    return html


@register.simple_tag
def queue_rows(action_requests, slug: str) -> SafeString:
    """`{% queue_rows page.object_list organization.slug %}`: the pending queue's table rows,
    each value escaped as a template would."""
    requests = UrlPattern("request_detail", slug, placeholder=uuid.UUID(int=0))
    rows = []
    for action_request in action_requests:
        request_uuid = str(action_request.uuid)
        action, requester = (
            text(action_request.action.name),
            text(action_request.requester.get_username()),
        )
        select = ""
        if action_request.selectable:
            select = (
                '<input class="form-check-input" type="checkbox" name="requests" '
                f'value="{request_uuid}" id="select-{request_uuid}" '
                f'aria-label="Select {action} requested by {requester}">'
            )
        waiting = time_element(action_request.submitted_at, since=True)
        if action_request.is_close_to_expiry():
            waiting += (
                '<br><span class="badge text-bg-warning">Expires soon</span> <span class="small">'
                f"at {time_element(action_request.expires_at, TO_THE_MINUTE_WITH_ZONE)}</span>"
            )
        expires = ""
        if action_request.expires_at and action_request.is_pending:
            expires = (
                '<div class="small text-body-secondary">Expires '
                f"{time_element(action_request.expires_at, TO_THE_MINUTE_WITH_ZONE)}</div>"
            )
        rows.append(
            QUEUE_ROW.format(
                select=select,
                waiting=waiting,
                url=requests.url(request_uuid),
                action=action,
                targets=_targets(action_request),
                requester=requester,
                status=_status(action_request),
                summary=linebreaksbr(action_request.summary),
                expires=expires,
            )
        )
    return mark_safe("".join(rows))  # noqa: S308 (every value above is escaped)

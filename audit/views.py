"""The audit log of an organization: browse, look at one event, export as CSV.

Pages are keyset pages over the organization's chain: `before=<sequence>` shows the 50 events
older than that one, `after=<sequence>` the 50 newer ones, so a page costs the same a million
events back as on the first page, and events added meanwhile never shift a page.
"""

import csv
import json
from collections.abc import Iterator
from datetime import UTC, timedelta
from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils.http import urlencode
from django.views.decorators.http import require_GET

from actions.models import ResponseAction
from responseportal.access import get_membership
from responseportal.forms import search_input, select, text_input
from responseportal.http import normalized_ip
from responseportal.models import Membership, Role

from .chain import (
    VERBS,
    canonical_data,
    canonical_timestamp,
    chain_of,
    event_hash,
    record,
)
from .context import AuditContext
from .describe import in_words
from .models import GENESIS_HASH, AuditEvent, Source

PAGE_SIZE = 50
LAST_SEQUENCE = 2**63 - 1  # PositiveBigIntegerField
AUDIT_ROLES = (Role.ADMIN, Role.AUDITOR)
DATETIME_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"]


def _moment(label: str) -> forms.DateTimeField:
    return forms.DateTimeField(
        required=False,
        label=label,
        input_formats=DATETIME_FORMATS,
        widget=forms.DateTimeInput(
            attrs={"type": "datetime-local", "class": "form-control"}, format="%Y-%m-%dT%H:%M"
        ),
        error_messages={"invalid": "Expected a date and time such as 2025-01-31T14:30."},
    )


VERB_CHOICES = [("", "Any verb"), *((verb, verb) for verb in VERBS)]


class AuditFilter(forms.Form):
    """The log's filters, and the page cursor (`before` or `after`, not shown as fields)."""

    since = _moment("From")
    until = _moment("To")
    actor = forms.CharField(required=False, max_length=150, label="Actor", widget=text_input())
    actor_match = forms.ChoiceField(
        required=False,
        label="Actor match",
        choices=[("exact", "is exactly"), ("contains", "contains")],
        widget=select(),
    )
    # Its choices are set on each form: copied with the class's fields, the verbs made the
    # form's construction twice as long.
    verb = forms.ChoiceField(required=False, widget=select())
    action = forms.ChoiceField(required=False, widget=select())
    request = forms.UUIDField(
        required=False,
        label="Request ID",
        widget=text_input(placeholder="3f2b9c1e-…"),
        error_messages={"invalid": "Expected a request ID such as 3f2b9c1e-5a7d-4e0f-9c1b-…"},
    )
    source = forms.ChoiceField(
        required=False, choices=[("", "Any source"), *Source.choices], widget=select()
    )
    q = forms.CharField(required=False, max_length=200, label="Search", widget=search_input())
    before = forms.CharField(required=False, widget=forms.HiddenInput)
    after = forms.CharField(required=False, widget=forms.HiddenInput)

    CURSORS = ("before", "after")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["verb"].choices = VERB_CHOICES
        self.fields["action"].choices = [
            ("", "Any action"),
            *ResponseAction.objects.order_by("name").values_list("key", "name"),
        ]

    def _cursor(self, name: str) -> int | None:
        value = self.cleaned_data.get(name, "").strip()
        if not value:
            return None
        if not (value.isascii() and value.isdigit() and int(value) <= LAST_SEQUENCE):
            raise forms.ValidationError(
                f"`{value[:30]}` is not a position in the log: expected a whole number, "
                "as in the Older and Newer links."
            )
        return int(value)

    def clean_before(self) -> int | None:
        return self._cursor("before")

    def clean_after(self) -> int | None:
        return self._cursor("after")

    def _moment(self, name: str):
        moment = self.cleaned_data.get(name)
        if moment is not None and not 1970 <= moment.year <= 9998:
            raise forms.ValidationError(
                f"{moment.year} is out of range: expected a year from 1970 to 9998."
            )
        return moment

    def clean_since(self):
        return self._moment("since")

    def clean_until(self):
        return self._moment("until")

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            self.add_error("until", "To must not be earlier than From.")
        if data.get("before") is not None and data.get("after") is not None:
            self.add_error(None, "A page is either before or after an event, not both.")
        return data

    def filters(self) -> dict[str, str]:
        """The filters in use, as written in the URL (the cursor left out)."""
        return {
            name: self.data[name]
            for name in self.fields
            if name not in self.CURSORS
            and self.cleaned_data.get(name) not in (None, "")
            and not (name == "actor_match" and not self.cleaned_data.get("actor"))
        }

    def apply(self, chain: str) -> QuerySet:
        """The events of `chain` that match the filters."""
        data = self.cleaned_data
        events = AuditEvent.objects.filter(chain=chain)
        if data["since"] or data["until"]:
            events = _within(events, chain, data["since"], data["until"])
        if data["actor"]:
            if data["actor_match"] == "contains":
                events = events.filter(actor_username__icontains=data["actor"])
            else:
                events = events.filter(actor_username=data["actor"])
        if data["verb"]:
            events = events.filter(verb=data["verb"])
        if data["action"]:
            events = events.filter(action_key=data["action"])
        if data["request"]:
            events = events.filter(request__uuid=data["request"])
        if data["source"]:
            events = events.filter(source=data["source"])
        if data["q"]:
            q = data["q"]
            events = events.annotate(data_text=Cast("data", TextField())).filter(
                Q(verb__icontains=q)
                | Q(actor_username__icontains=q)
                | Q(action_key__icontains=q)
                | Q(data_text__icontains=q)
            )
        return events


def _within(events: QuerySet, chain: str, since, until) -> QuerySet:
    """The events from `since` to `until`, as the range of sequences between them.

    Timestamps never go back along a chain (see `record`), so the time range is one run of
    sequences, found with two lookups in the time index; the page then reads the main index.
    Filtering on `timestamp` instead scans from the newest event back to the range.
    """
    in_chain = AuditEvent.objects.filter(chain=chain)
    if since is not None:
        first = (
            in_chain.filter(timestamp__gte=since)
            .order_by("timestamp", "sequence")
            .values_list("sequence", flat=True)
            .first()
        )
        events = events.filter(sequence__gte=first) if first is not None else events.none()
    if until is not None:
        if until.second == 0 and until.microsecond == 0:
            # "To 14:30" includes the events of 14:30 itself.
            before_end = in_chain.filter(timestamp__lt=until + timedelta(minutes=1))
        else:
            before_end = in_chain.filter(timestamp__lte=until)
        last = (
            before_end.order_by("-timestamp", "-sequence")
            .values_list("sequence", flat=True)
            .first()
        )
        events = events.filter(sequence__lte=last) if last is not None else events.none()
    return events


def _audit_membership(request: HttpRequest, slug: str) -> Membership:
    return get_membership(request.user, slug, roles=AUDIT_ROLES)


def _events_of(membership: Membership) -> QuerySet:
    return AuditEvent.objects.filter(chain=chain_of(membership.organization))


def _filtered(form: AuditFilter, membership: Membership) -> QuerySet:
    return form.apply(chain_of(membership.organization))


def _page(events: QuerySet, before: int | None, after: int | None) -> dict:
    """One keyset page, newest first, and whether there are older and newer events."""
    events = events.select_related("request")
    if after is not None:
        rows = list(events.filter(sequence__gt=after).order_by("sequence")[: PAGE_SIZE + 1])
        has_newer = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE][::-1]
        has_older = events.filter(sequence__lte=after).exists()
    else:
        older = events.filter(sequence__lt=before) if before is not None else events
        rows = list(older.order_by("-sequence")[: PAGE_SIZE + 1])
        has_older = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
        has_newer = before is not None and events.filter(sequence__gte=before).exists()
    return {
        "events": rows,
        "older": rows[-1].sequence if has_older and rows else None,
        "newer": rows[0].sequence if has_newer and rows else None,
    }


def _label(form: AuditFilter, name: str) -> str:
    if name in AuditFilter.CURSORS:
        return f"Page position ({name})"
    if name not in form.fields:
        return ""
    return form.fields[name].label or name.capitalize()


def _log_page(request: HttpRequest, membership: Membership, form: AuditFilter, status=200):
    context = {
        "membership": membership,
        "organization": membership.organization,
        "form": form,
        "events": [],
        "export_query": "",
    }
    if not form.is_valid():
        context["problems"] = [
            {"field": _label(form, name), "message": message}
            for name, messages in form.errors.items()
            for message in messages
        ]
    else:
        events = _filtered(form, membership)
        context.update(_page(events, form.cleaned_data["before"], form.cleaned_data["after"]))
        context["export_query"] = urlencode(form.filters())
        context["filtered"] = bool(form.filters())
        context["paged"] = (
            form.cleaned_data["before"] is not None or form.cleaned_data["after"] is not None
        )
    return render(request, "audit/log.html", context, status=status)


@login_required
@require_GET
def audit_log(request: HttpRequest, slug: str) -> HttpResponse:
    membership = _audit_membership(request, slug)
    form = AuditFilter(request.GET)
    return _log_page(request, membership, form, status=200 if form.is_valid() else 400)


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _difference(data: dict) -> tuple[list[dict], dict]:
    """The fields of `data` recorded as {"before": …, "after": …}, and everything else."""
    changes, rest = [], {}
    # By name: PostgreSQL's jsonb does not keep the order the keys were written in.
    for name, value in sorted(data.items()):
        if isinstance(value, dict) and "before" in value and "after" in value:
            before, after = value["before"], value["after"]
            row = {"field": name, "before": _shown(before), "after": _shown(after)}
            if isinstance(before, list) and isinstance(after, list):
                row["added"] = [_shown(item) for item in after if item not in before]
                row["removed"] = [_shown(item) for item in before if item not in after]
            changes.append(row)
        else:
            rest[name] = value
    return changes, rest


@login_required
@require_GET
def audit_event(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    membership = _audit_membership(request, slug)
    event = get_object_or_404(
        _events_of(membership).select_related("request", "request__action"), pk=pk
    )
    neighbours = {
        e.sequence: e
        for e in _events_of(membership)
        .filter(sequence__in=[event.sequence - 1, event.sequence + 1])
        .only("id", "sequence", "hash")
    }
    previous = neighbours.get(event.sequence - 1)
    changes, rest = _difference(event.data)
    return render(
        request,
        "audit/event.html",
        {
            "membership": membership,
            "organization": membership.organization,
            "event": event,
            "sentence": in_words([event])[0].sentence,
            "previous": previous,
            "next": neighbours.get(event.sequence + 1),
            "content_intact": event_hash(event) == event.hash,
            "link_intact": (
                previous.hash == event.prev_hash
                if previous is not None
                else event.sequence == 1 and event.prev_hash == GENESIS_HASH
            ),
            "changes": changes,
            "rest": json.dumps(rest, indent=2, ensure_ascii=False, sort_keys=True) if rest else "",
        },
    )


CSV_COLUMNS = (
    "id",
    "chain",
    "sequence",
    "timestamp",
    "organization_id",
    "organization",
    "actor_id",
    "actor_username",
    "role",
    "verb",
    "request_id",
    "request",
    "action_key",
    "data",
    "source",
    "ip_address",
    "user_agent",
    "prev_hash",
    "hash",
)
# The one rule of the export (README, "Audit log"): any cell that starts with one of these gets
# one more `'` in front, so a spreadsheet takes none for a formula; a reader removes one `'` from
# every cell that starts with `'`, and has the exact value back.
QUOTED_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")
ROWS_PER_CHUNK = 500


class _Echo:
    """A file whose write returns what it was given, so csv.writer builds lines for streaming."""

    def write(self, value: str) -> str:
        return value


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(QUOTED_STARTS) else text


def _csv_lines(slug: str, events: QuerySet) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    rows = events.order_by("sequence").values(
        *(c for c in CSV_COLUMNS if c not in {"organization", "request"}), "request__uuid"
    )
    lines = []
    for row in rows.iterator(chunk_size=2000):
        row["organization"] = slug
        row["request"] = row["request__uuid"]
        row["timestamp"] = canonical_timestamp(row["timestamp"])
        row["data"] = canonical_data(row["data"])
        row["ip_address"] = normalized_ip(row["ip_address"])
        lines.append(writer.writerow([_cell(row[column]) for column in CSV_COLUMNS]))
        if len(lines) >= ROWS_PER_CHUNK:
            yield "".join(lines)
            lines = []
    if lines:
        yield "".join(lines)


@login_required
@require_GET
def audit_export(request: HttpRequest, slug: str) -> HttpResponse:
    """The filtered events, oldest first, up to (not including) this export's own event."""
    membership = _audit_membership(request, slug)
    form = AuditFilter(request.GET)
    if not form.is_valid():
        return _log_page(request, membership, form, status=400)
    organization = membership.organization
    filters = form.filters()
    # Recorded, and committed, before the first row leaves.
    exported = record(
        organization,
        "audit.exported",
        actor=request.user,
        role=membership.role,
        data={"filters": filters},
        context=AuditContext.from_request(request),
    )
    events = _filtered(form, membership).filter(sequence__lt=exported.sequence)
    moment = exported.timestamp.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    response = StreamingHttpResponse(
        _csv_lines(organization.slug, events), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = (
        f'attachment; filename="audit-{organization.slug}-{moment}.csv"'
    )
    response["Cache-Control"] = "no-store"
    return response

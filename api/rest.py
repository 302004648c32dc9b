"""The portal's own REST API, `/api/v1/`: thin views over the services the pages call."""

import csv
import hashlib
import io
import json
import re
import uuid
from itertools import groupby
from uuid import UUID

from django import forms
from django.core.exceptions import FieldDoesNotExist
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.exceptions import NotFound
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from actions.catalog import REVERSALS
from actions.models import CATEGORY_ORDER, Category, ResponseAction
from actions.validators import shown
from approvals import services
from approvals.decision import decide
from approvals.decision_forms import ApproveForm, RejectForm
from approvals.forms import form_for
from approvals.lookups import get_request_for
from approvals.models import (
    ActionRequest,
    ApprovalMode,
    ApprovalSettings,
    RequestStatus,
    ReviewOutcome,
)
from approvals.services import SCOPE_LISTS
from approvals.settings_forms import ApprovalSettingsForm
from approvals.transitions import SubmissionRefused
from approvals.undo import UNDOABLE_STATUSES
from approvals.views import RequestFilter
from audit.chain import VERBS, chain_of
from audit.context import AuditContext
from audit.models import AuditEvent, Source
from audit.views import AUDIT_ROLES, LAST_SEQUENCE, AuditFilter
from responseportal.http import normalized_ip
from responseportal.models import Role

from .access import membership_for
from .models import IdempotencyKey
from .problems import PROBLEM as PROBLEM_TYPE
from .problems import FormInvalid, problem

PROBLEM = inline_serializer(
    "Problem",
    {
        "type": serializers.CharField(),
        "title": serializers.CharField(),
        "status": serializers.IntegerField(),
        "detail": serializers.CharField(),
        "errors": serializers.DictField(
            child=serializers.ListField(child=serializers.CharField()), required=False
        ),
    },
)


def problems(*codes: int) -> dict:
    """The schema's error responses: RFC 9457 problem details, as `problems.problem` sends."""
    return {(code, PROBLEM_TYPE): PROBLEM for code in codes}


ERRORS = problems(401, 403, 404, 429)

ACTION_FIELDS = {
    "key": serializers.CharField(),
    "name": serializers.CharField(),
    "category": serializers.CharField(),
    "description": serializers.CharField(),
    "needs_auto_approval": serializers.BooleanField(),
    "parameters": serializers.ListField(
        child=inline_serializer(
            "ActionParameter",
            {
                "name": serializers.CharField(),
                "label": serializers.CharField(),
                "help": serializers.CharField(),
                "required": serializers.BooleanField(),
            },
        )
    ),
    "approval": serializers.ChoiceField(
        choices=["not_required", "auto", "manual", "refused"],
        help_text="How the organization's settings treat a request for it now "
        "(for endpoints in scope).",
    ),
    "refusal": serializers.CharField(help_text="Why it is refused now, or empty."),
}


@extend_schema(
    summary="The catalog, as this organization's settings treat it now",
    responses={
        200: inline_serializer(
            "Catalog", {"actions": inline_serializer("Action", ACTION_FIELDS, many=True)}
        ),
        **ERRORS,
    },
)
@api_view(["GET"])
def catalog(request: Request, slug: str) -> Response:
    membership = membership_for(request, slug)
    settings = ApprovalSettings.for_organization(membership.organization)
    actions = sorted(
        ResponseAction.objects.filter(active=True),
        key=lambda action: (CATEGORY_ORDER[action.category], action.position),
    )
    listed = []
    for _, members in groupby(actions, key=lambda action: action.category):
        for action in members:
            decision = decide(action, settings, [])
            listed.append(
                {
                    "key": action.key,
                    "name": action.name,
                    "category": action.category,
                    "description": action.description,
                    "needs_auto_approval": action.needs_auto_approval,
                    "parameters": [
                        {
                            "name": p["name"],
                            "label": p["label"],
                            "help": p["help"],
                            "required": p.get("required", True),
                        }
                        for p in action.parameters
                    ],
                    "approval": "refused" if decision.refused else str(decision.mode),
                    "refusal": decision.refusal,
                }
            )
    return Response({"actions": listed})


# Requests

REQUEST_FIELDS = {
    "uuid": serializers.UUIDField(),
    "action": serializers.CharField(),
    "action_name": serializers.CharField(),
    "status": serializers.CharField(
        help_text="As people see it: an overdue pending one is expired."
    ),
    "approval_mode": serializers.CharField(),
    "requester": serializers.CharField(),
    "submitted_at": serializers.DateTimeField(),
    "expires_at": serializers.DateTimeField(allow_null=True),
    "decided_at": serializers.DateTimeField(allow_null=True),
    "decided_by": serializers.CharField(allow_null=True),
    "decision_reason": serializers.CharField(),
    "summary": serializers.CharField(),
    "parameters": serializers.DictField(),
    "targets": inline_serializer(
        "Target",
        {
            "kind": serializers.CharField(),
            "value": serializers.CharField(),
            "status": serializers.CharField(),
            "message": serializers.CharField(),
        },
        many=True,
    ),
}


# Another request a request links to (an undo and the request it reverses): one class for both
# fields, so that the schema has one component.
LinkedRequest = type(
    inline_serializer(
        "LinkedRequest",
        {
            "uuid": serializers.UUIDField(),
            "action": serializers.CharField(),
            "action_name": serializers.CharField(),
            "status": serializers.CharField(),
            "url": serializers.URLField(help_text="The request in this API."),
        },
    )
)
DETAIL = inline_serializer(
    "ActionRequestDetail",
    {
        **REQUEST_FIELDS,
        "approvals": inline_serializer(
            "Approvals",
            {
                "needed": serializers.IntegerField(
                    help_text="Distinct admins whose approval it needs, fixed at submission; "
                    "0 when it needed no decision (not required, automatic, break-glass)."
                ),
                "given": serializers.IntegerField(),
                "approved_by": inline_serializer(
                    "ApprovalGiven",
                    {
                        "admin": serializers.CharField(),
                        "approved_at": serializers.DateTimeField(),
                        "comment": serializers.CharField(allow_blank=True),
                        "source": serializers.CharField(),
                    },
                    many=True,
                ),
            },
        ),
        "break_glass": inline_serializer(
            "BreakGlass",
            {
                "justification": serializers.CharField(),
                "awaits_review": serializers.BooleanField(),
                "review": inline_serializer(
                    "BreakGlassReview",
                    {
                        "outcome": serializers.ChoiceField(
                            choices=[o.value for o in ReviewOutcome]
                        ),
                        "reviewed_by": serializers.CharField(),
                        "reviewed_at": serializers.DateTimeField(),
                        "comment": serializers.CharField(allow_blank=True),
                    },
                    allow_null=True,
                ),
            },
            allow_null=True,
            help_text="A break-glass run's justification and review; null for other requests.",
        ),
        "undoes": LinkedRequest(
            allow_null=True, help_text="The request this one reverses (an Undo), or null."
        ),
        "undone_by": LinkedRequest(
            many=True, help_text="The requests that reverse this one (Undo), oldest first."
        ),
        "timeline": inline_serializer(
            "TimelineEvent",
            {
                "timestamp": serializers.DateTimeField(),
                "verb": serializers.CharField(),
                "actor": serializers.CharField(),
                "source": serializers.CharField(),
                "data": serializers.DictField(),
            },
            many=True,
        ),
    },
)
CHANGE_ERRORS = {**ERRORS, **problems(400, 409, 413)}


def _request_json(action_request: ActionRequest, targets: list[dict]) -> dict:
    """The fields of a listed request; `targets` as `TARGET_FIELDS` rows."""
    decided_by = action_request.decided_by
    return {
        "uuid": str(action_request.uuid),
        "action": action_request.action.key,
        "action_name": action_request.action.name,
        "status": str(action_request.shown_status),
        "approval_mode": action_request.approval_mode,
        "requester": action_request.requester.get_username(),
        "submitted_at": _iso(action_request.submitted_at),
        "expires_at": _iso(action_request.expires_at),
        "decided_at": _iso(action_request.decided_at),
        "decided_by": decided_by.get_username() if decided_by else None,
        "decision_reason": action_request.decision_reason,
        "summary": action_request.summary,
        "parameters": action_request.parameters,
        "targets": targets,
    }


TARGET_FIELDS = ("kind", "value", "status", "message")


def _target_json(target) -> dict:
    return {name: getattr(target, name) for name in TARGET_FIELDS}


def _iso(moment):
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None


def _context(request: Request) -> AuditContext:
    base = AuditContext.from_request(request._request, source=Source.API)
    return AuditContext(
        source=base.source,
        ip_address=base.ip_address,
        user_agent=base.user_agent,
        api_token=request.auth.name,
    )


CURSOR = re.compile(r"[A-Za-z0-9+/=_-]{1,500}")


class KeysetPagination(CursorPagination):
    """Cursor pages whose bad cursor is a 400 naming it (DRF's own answer is a 404)."""

    max_page_size = 100
    page_size_query_param = "page_size"

    def decode_cursor(self, request):
        raw = request.query_params.get(self.cursor_query_param)
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            cursor = None
            usable = False
        else:
            usable = raw is None or (
                CURSOR.fullmatch(raw) is not None
                and cursor != Cursor(offset=0, reverse=False, position=None)
                and (cursor.position is None or self.usable(cursor.position))
            )
        if not usable:
            raise FormInvalid(
                {"cursor": ["This cursor is not one of ours: use the `next` or `previous` link."]}
            )
        return cursor

    def usable(self, position: str) -> bool:
        """Whether `position` is a value of the first ordering field."""
        raise NotImplementedError


class RequestPagination(KeysetPagination):
    page_size = 50
    ordering = ("-submitted_at", "-id")

    def usable(self, position: str) -> bool:
        try:
            return parse_datetime(position) is not None
        except ValueError:
            return False


SUBMISSION = inline_serializer(
    "Submission",
    {
        "action": serializers.CharField(help_text="An action key from the catalog."),
        "parameters": serializers.DictField(
            help_text="The action's fields by name, as its form takes them; a list stands "
            "for one item per line."
        ),
    },
)


@extend_schema(
    methods=["GET"],
    summary="The organization's requests, newest first, with the filters of the requests page",
    parameters=[
        OpenApiParameter("status", str, enum=[s.value for s in RequestStatus]),
        OpenApiParameter("action", str, description="An action key."),
        OpenApiParameter("q", str, description="Words of the summary or a target."),
        OpenApiParameter("cursor", str),
        OpenApiParameter("page_size", int),
    ],
    operation_id="requests_list",
    responses={
        200: inline_serializer(
            "RequestPage",
            {
                "next": serializers.URLField(allow_null=True),
                "previous": serializers.URLField(allow_null=True),
                "results": inline_serializer("ActionRequestListed", REQUEST_FIELDS, many=True),
            },
        ),
        **ERRORS,
        **problems(400),
    },
)
@extend_schema(
    methods=["POST"],
    summary="Submit a request (Idempotency-Key: the same key and body return the same request)",
    request=SUBMISSION,
    operation_id="requests_submit",
    parameters=[OpenApiParameter("Idempotency-Key", str, location=OpenApiParameter.HEADER)],
    responses={201: DETAIL, 200: DETAIL, **CHANGE_ERRORS, **problems(422)},
)
@api_view(["GET", "POST"])
def requests(request: Request, slug: str) -> Response:
    if request.method == "POST":
        return _submit(request, slug)
    membership = membership_for(request, slug)
    filters = RequestFilter(request.query_params or None)
    if filters.is_bound and not filters.is_valid():
        raise FormInvalid({k: list(v) for k, v in filters.errors.items()})
    listing = filters.apply(
        ActionRequest.objects.filter(organization=membership.organization).select_related(
            "action", "requester", "decided_by"
        )
    ).prefetch_related("targets")
    paginator = RequestPagination()
    page = paginator.paginate_queryset(listing, request)
    return paginator.get_paginated_response(
        [_request_json(r, [_target_json(t) for t in r.targets.all()]) for r in page]
    )


def _form_data(form_class, parameters: dict) -> tuple[dict, dict]:
    """The JSON parameters as the form's POST data and files."""
    data, files = {}, {}
    for name, value in parameters.items():
        field = form_class.base_fields.get(name)
        if field is None or name == "submission_token":
            continue
        if isinstance(field, forms.FileField):
            if isinstance(value, dict) and isinstance(value.get("content"), str):
                files[name] = SimpleUploadedFile(
                    str(value.get("name", "upload")), value["content"].encode("utf-8", "replace")
                )
            continue
        if isinstance(field, forms.MultipleChoiceField):
            data[name] = [str(v) for v in value] if isinstance(value, list) else [str(value)]
        elif isinstance(value, list):
            data[name] = "\n".join(str(v) for v in value)
        elif isinstance(value, bool):
            data[name] = "on" if value else ""
        else:
            data[name] = str(value)
    return data, files


MAX_KEY_LENGTH = 255


def _submit(request: Request, slug: str) -> Response:
    membership = membership_for(request, slug, roles=[Role.OPERATOR])
    organization = membership.organization
    body = request.data if isinstance(request.data, dict) else None
    if body is None:
        raise FormInvalid({"__all__": ["Expected a JSON object with `action` and `parameters`."]})
    key_text = request.headers.get("Idempotency-Key")
    if key_text is not None and not (
        0 < len(key_text) <= MAX_KEY_LENGTH and key_text.isascii() and key_text.isprintable()
    ):
        raise FormInvalid(
            {
                "Idempotency-Key": [
                    f"The Idempotency-Key is not usable: expected 1 to {MAX_KEY_LENGTH} "
                    "printable ASCII characters."
                ]
            }
        )
    digest = hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    if key_text is not None:
        used = IdempotencyKey.objects.filter(
            user=request.user, organization=organization, key=key_text
        ).first()
        if used is not None:
            if used.body_sha256 != digest:
                return problem(
                    422,
                    f"The Idempotency-Key `{key_text}` was already used at "
                    f"{_iso(used.created_at)} with another body: expected the same body, or a "
                    "new key for a new request.",
                )
            return Response(_detail(request, _read(used.action_request_id)), status=200)
    action_key = body.get("action")
    action = (
        ResponseAction.objects.filter(key=action_key, active=True).first()
        if isinstance(action_key, str)
        else None
    )
    if action is None:
        raise FormInvalid(
            {"action": [f"`{action_key}` is not an action of the catalog: expected its key."]}
        )
    parameters = body.get("parameters", {})
    if not isinstance(parameters, dict):
        raise FormInvalid({"parameters": ["Expected an object of the action's fields by name."]})
    form_class = form_for(action.key)
    data, files = _form_data(form_class, parameters)
    token = (
        uuid.uuid5(uuid.NAMESPACE_URL, f"api:{request.user.pk}:{organization.pk}:{key_text}")
        if key_text is not None
        else uuid.uuid4()
    )
    form = form_class({**data, "submission_token": str(token)}, files, organization=organization)
    if not form.is_valid():
        raise FormInvalid({k: list(v) for k, v in form.errors.items()})
    try:
        created = services.submit_request(
            organization,
            action,
            actor=request.user,
            parameters=form.parameters(),
            targets=form.targets(),
            endpoints=form.endpoints(),
            summary=form.summary(),
            submission_token=token,
            break_glass=form.cleaned_data["break_glass"],
            justification=form.cleaned_data["justification"],
            context=_context(request),
        )
    except SubmissionRefused as refusal:
        raise FormInvalid({"__all__": [refusal.message]}) from None
    if key_text is not None:
        try:
            with transaction.atomic():
                IdempotencyKey.objects.create(
                    user=request.user,
                    organization=organization,
                    key=key_text,
                    body_sha256=digest,
                    action_request=created,
                )
        except IntegrityError:
            pass  # the same key at the same moment: the submission token chose one request
    return Response(_detail(request, _reread(created)), status=201)


def _read(pk: int) -> ActionRequest:
    """The request `pk` with what its answer shows of it, in one statement."""
    return ActionRequest.objects.select_related(
        "organization", "action", "requester", "decided_by"
    ).get(pk=pk)


def _reread(action_request: ActionRequest) -> ActionRequest:
    """The request as it is now, after a change: its row read again (execution may have moved
    it on since), its action, organization and requester, which never change, reused."""
    fresh = ActionRequest.objects.get(pk=action_request.pk)
    fresh.action = action_request.action
    fresh.organization = action_request.organization
    fresh.requester = action_request.requester
    return fresh


def _linked(request: Request, action_request: ActionRequest) -> dict:
    return {
        "uuid": str(action_request.uuid),
        "action": action_request.action.key,
        "action_name": action_request.action.name,
        "status": str(action_request.shown_status),
        "url": request.build_absolute_uri(
            reverse("api_request", args=[action_request.organization.slug, action_request.uuid])
        ),
    }


def _detail(request: Request, action_request: ActionRequest) -> dict:
    """The request page's facts about `action_request`: targets, approvals so far, break-glass
    justification and review, undo links and timeline. Each part is read only where the request
    can have it: approvals on a manual one, undos on a finished reversible one."""
    organization = action_request.organization
    targets = list(action_request.targets.values(*TARGET_FIELDS))
    manual = action_request.approval_mode == ApprovalMode.MANUAL
    approvals = list(action_request.approvals.select_related("admin")) if manual else []
    undoes = None
    if action_request.undoes_id is not None:
        undoes = ActionRequest.objects.select_related("action").get(pk=action_request.undoes_id)
        undoes.organization = organization
    undone_by = []
    if action_request.action.key in REVERSALS and action_request.status in UNDOABLE_STATUSES:
        undone_by = list(
            action_request.undone_by.select_related("action").order_by("submitted_at", "id")
        )
        for undo in undone_by:
            undo.organization = organization
    break_glass = None
    if action_request.is_break_glass:
        review = None
        if action_request.reviewed_at is not None:
            review = {
                "outcome": action_request.review_outcome,
                "reviewed_by": action_request.reviewed_by.get_username(),
                "reviewed_at": _iso(action_request.reviewed_at),
                "comment": action_request.review_comment,
            }
        break_glass = {
            "justification": action_request.justification,
            "awaits_review": action_request.awaits_review,
            "review": review,
        }
    events = action_request.events.order_by("timestamp", "id").values_list(
        "timestamp", "verb", "actor_username", "source", "data"
    )
    return {
        **_request_json(action_request, targets),
        "approvals": {
            "needed": action_request.approvals_needed if manual else 0,
            "given": len(approvals),
            "approved_by": [
                {
                    "admin": approval.admin.get_username(),
                    "approved_at": _iso(approval.approved_at),
                    "comment": approval.comment,
                    "source": approval.source,
                }
                for approval in approvals
            ],
        },
        "break_glass": break_glass,
        "undoes": _linked(request, undoes) if undoes is not None else None,
        "undone_by": [_linked(request, undo) for undo in undone_by],
        "timeline": [
            {
                "timestamp": _iso(timestamp),
                "verb": verb,
                "actor": actor,
                "source": source,
                "data": data,
            }
            for timestamp, verb, actor, source, data in events
        ],
    }


@extend_schema(
    summary="One request, with its targets and timeline", responses={200: DETAIL, **ERRORS}
)
@api_view(["GET"])
def request_detail(request: Request, slug: str, uuid: UUID) -> Response:
    membership_for(request, slug)
    _, action_request = get_request_for(request.user, slug, uuid)
    return Response(_detail(request, action_request))


@extend_schema(
    summary="Cancel a pending request (its requester only)",
    request=None,
    responses={200: DETAIL, **CHANGE_ERRORS},
)
@api_view(["POST"])
def cancel(request: Request, slug: str, uuid: UUID) -> Response:
    membership_for(request, slug)
    _, action_request = get_request_for(request.user, slug, uuid)
    services.cancel_request(action_request.pk, actor=request.user, context=_context(request))
    return Response(_detail(request, _reread(action_request)))


@extend_schema(
    summary="Approve a pending request (admins; never one's own)",
    request=inline_serializer("Approval", {"comment": serializers.CharField(required=False)}),
    responses={200: DETAIL, **CHANGE_ERRORS},
)
@api_view(["POST"])
def approve(request: Request, slug: str, uuid: UUID) -> Response:
    return _decide(request, slug, uuid, ApproveForm, "comment", services.approve_request)


@extend_schema(
    summary="Reject a pending request (admins; never one's own; a reason is required)",
    request=inline_serializer("Rejection", {"reason": serializers.CharField()}),
    responses={200: DETAIL, **CHANGE_ERRORS},
)
@api_view(["POST"])
def reject(request: Request, slug: str, uuid: UUID) -> Response:
    return _decide(request, slug, uuid, RejectForm, "reason", services.reject_request)


def _decide(request: Request, slug: str, uuid: UUID, form_class, text: str, service):
    membership_for(request, slug, roles=[Role.ADMIN])
    _, action_request = get_request_for(request.user, slug, uuid, roles=[Role.ADMIN])
    body = request.data if isinstance(request.data, dict) else {}
    form = form_class({text: str(body.get(text, ""))} if text in body else {})
    if not form.is_valid():
        raise FormInvalid({k: list(v) for k, v in form.errors.items()})
    service(
        action_request.pk,
        actor=request.user,
        context=_context(request),
        **{text: form.cleaned_data[text]},
    )
    return Response(_detail(request, _reread(action_request)))


# Approval settings: read with an ETag, change with If-Match, through the settings page's form

SETTINGS_ETAG = re.compile(r'"approval-settings-([0-9]{1,18})"')
# The page's endpoint lists are CSV uploads and "remove all" boxes; the API takes the lists.
SCOPE_LIST_FIELDS = {name: (f"{name}_csv", f"clear_{name}") for name in SCOPE_LISTS}
HIDDEN_FIELDS = {"version", *(f for pair in SCOPE_LIST_FIELDS.values() for f in pair)}


def _settings_form(organization, current, *, editable: bool, data=None, files=None):
    actions = ResponseAction.objects.filter(
        active=True, category__in=[Category.CRITICAL, Category.RECOMMENDED]
    ).order_by("position")
    if data is None:
        return ApprovalSettingsForm(settings=current, actions=actions, editable=editable)
    return ApprovalSettingsForm(data, files, settings=current, actions=actions, editable=editable)


def _settings_etag(current: ApprovalSettings) -> str:
    return f'"approval-settings-{current.version}"'


def _settings_json(form: ApprovalSettingsForm) -> dict:
    """Every setting the page shows, by its form field's name, as the page shows it."""
    current = form.settings
    values = {}
    for name, field in form.fields.items():
        if name in HIDDEN_FIELDS:
            continue
        value = form.get_initial_for_field(field, name)
        stored = getattr(current, name, None)
        if isinstance(stored, list) and isinstance(value, str):
            value = list(stored)  # a text area of one item per line: the items
        elif isinstance(field, forms.MultipleChoiceField):
            value = list(value or [])
        values[name] = value
    for name in SCOPE_LISTS:
        values[name] = list(getattr(current, name))
    return {
        "settings": values,
        "version": current.version,
        "updated_at": _iso(current.updated_at),
    }


def _settings_response(form: ApprovalSettingsForm, status: int = 200) -> Response:
    response = Response(_settings_json(form), status=status)
    response["ETag"] = _settings_etag(form.settings)
    response["Cache-Control"] = "no-store"
    return response


def _as_post_data(field: forms.Field, value):
    """A value of the form's initial data as a browser would post it."""
    if isinstance(field, forms.BooleanField):
        return "on" if value else None
    if isinstance(field, forms.MultipleChoiceField):
        return [str(item) for item in value or []]
    return "" if value is None else str(value)


def _json_as_post_data(name: str, field: forms.Field, value) -> str | list[str] | None:
    """One JSON value as the form field takes it; a FormInvalid naming the field otherwise."""

    def wrong(expected: str):
        raise FormInvalid({name: [f"Expected {expected}."]})

    if isinstance(field, forms.BooleanField):
        if not isinstance(value, bool):
            wrong("true or false")
        return "on" if value else None
    if isinstance(field, forms.MultipleChoiceField):
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            wrong("a list of strings")
        return value
    if isinstance(field, forms.IntegerField):
        if isinstance(value, bool) or not isinstance(value, int | str):
            wrong("a whole number")
        return str(value)
    if isinstance(field.widget, forms.Textarea) and isinstance(value, list):
        if not all(isinstance(item, str) for item in value):
            wrong("a list of strings")
        return "\n".join(value)
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        wrong("a string")
    return str(value)


def _settings_changes(form: ApprovalSettingsForm, body: dict, *, whole: bool):
    """The form's POST data and files for `body` over the current settings: `whole` (PUT)
    when `body` must name every setting but those made per action."""
    writable = [name for name in form.fields if name not in HIDDEN_FIELDS]
    known = {*writable, *SCOPE_LISTS}
    unknown = sorted(set(body) - known)
    if unknown:
        raise FormInvalid(
            {
                name: [
                    f"`{shown(name)}` is not an approval setting: expected one of "
                    f"{', '.join(sorted(known))}."
                ]
                for name in unknown[:10]
            }
        )
    if whole:
        every = {name for name in form.base_fields if name not in HIDDEN_FIELDS}
        missing = sorted({*every, *SCOPE_LISTS} - set(body))
        if missing:
            raise FormInvalid(
                {
                    name: ["Missing: PUT replaces every setting; send them all, or use PATCH."]
                    for name in missing
                }
            )
    data, files = {}, {}
    for name in writable:
        field = form.fields[name]
        if name in body:
            value = _json_as_post_data(name, field, body[name])
        else:
            value = _as_post_data(field, form.get_initial_for_field(field, name))
        if value is not None:
            data[name] = value
    for name, (upload, clear) in SCOPE_LIST_FIELDS.items():
        if name not in body:
            continue
        endpoints = body[name]
        if not isinstance(endpoints, list) or not all(isinstance(e, str) for e in endpoints):
            raise FormInvalid({name: ["Expected a list of endpoints (strings)."]})
        if endpoints == list(getattr(form.settings, name)):
            continue
        if endpoints:
            # As a one-column CSV file: the page's import checks it, with its messages.
            text = io.StringIO()
            csv.writer(text, lineterminator="\n").writerows([e] for e in endpoints)
            files[upload] = SimpleUploadedFile(
                f"{name}.csv", text.getvalue().encode("utf-8", "replace"), "text/csv"
            )
        else:
            data[clear] = "on"
    data["version"] = str(form.settings.version)
    return data, files


def _form_errors(form: ApprovalSettingsForm) -> dict[str, list[str]]:
    """The form's messages per field, the endpoint lists' under the list's own name."""
    named = {field: name for name, pair in SCOPE_LIST_FIELDS.items() for field in pair}
    errors: dict[str, list[str]] = {}
    for field, messages in form.errors.items():
        errors.setdefault(named.get(field, field), []).extend(messages)
    return errors


def _precondition(request: Request, current: ApprovalSettings) -> Response | None:
    """428 without If-Match, 412 when it names another version than the current one."""
    header = request.headers.get("If-Match")
    etag = _settings_etag(current)
    if header is None or not header.strip():
        return problem(
            428,
            "Changing the approval settings needs an If-Match header: send the ETag of the "
            f"settings you read (now {etag}), so that nobody's change is overwritten unseen.",
            current_etag=etag,
        )
    tags = [tag.strip() for tag in header.split(",")]
    versions = {int(m[1]) for tag in tags if (m := SETTINGS_ETAG.fullmatch(tag))}
    if current.version in versions:
        return None
    if not versions:
        return problem(
            412,
            f"The If-Match header names no version of these settings: expected {etag} "
            "(the ETag of GET …/settings/approval/).",
            current_etag=etag,
        )
    return _stale_settings(current)


SETTINGS_VERBS = ("settings.changed", "scope.imported")


def _stale_settings(current: ApprovalSettings) -> Response:
    """412 saying when the settings last changed, who changed what, and the current ETag."""
    # One save writes one `scope.imported` per list it replaces, then `settings.changed`, one
    # after the other in the chain (it holds the chain's lock until it commits).
    latest = list(
        AuditEvent.objects.filter(
            chain=chain_of(current.organization), verb__in=SETTINGS_VERBS
        ).order_by("-sequence")[: 1 + len(SCOPE_LISTS)]
    )
    save = latest[:1]
    for event in latest[1:]:
        follows = save[-1]
        if not (
            event.verb == "scope.imported"
            and event.sequence == follows.sequence - 1
            and event.actor_id == follows.actor_id
            and event.data.get("list") not in {e.data.get("list") for e in save}
            and (follows.timestamp - event.timestamp).total_seconds() < 1
        ):
            break
        save.append(event)
    extra = {"current_etag": _settings_etag(current), "updated_at": _iso(current.updated_at)}
    if save:
        last = save[0]
        extra["last_change"] = {
            "timestamp": _iso(last.timestamp),
            "actor": last.actor_username,
            "source": last.source,
            "events": [{"verb": e.verb, "data": e.data} for e in reversed(save)],
        }
    return problem(
        412,
        f"Someone changed these settings after you read them (at {_iso(current.updated_at)}, "
        f"now {_settings_etag(current)}). Read them again, and send your change with the "
        "new ETag.",
        **extra,
    )


def _setting_schema(name: str, field: forms.Field, required: bool) -> serializers.Field:
    """How the schema describes one field of the settings form."""
    described = {"help_text": str(field.help_text or field.label or ""), "required": required}
    if isinstance(field, forms.BooleanField):
        return serializers.BooleanField(**described)
    if isinstance(field, forms.MultipleChoiceField):
        return serializers.ListField(child=serializers.CharField(), **described)
    if isinstance(field, forms.IntegerField):
        return serializers.IntegerField(**described)
    if isinstance(field, forms.ChoiceField) and field.choices:
        return serializers.ChoiceField(choices=[c for c, _ in field.choices], **described)
    if _stored_as_list(name):
        return serializers.ListField(child=serializers.CharField(), **described)
    return serializers.CharField(allow_blank=True, **described)


def _stored_as_list(name: str) -> bool:
    """Whether the settings keep `name` as a list (a text area of one item per line)."""
    try:
        return ApprovalSettings._meta.get_field(name).default is list
    except FieldDoesNotExist:
        return False


def _settings_fields(*, required: bool) -> dict:
    """The settings form's fields (those made per action are not in the schema's list)."""
    fields = {
        name: _setting_schema(name, field, required)
        for name, field in ApprovalSettingsForm.base_fields.items()
        if name not in HIDDEN_FIELDS
    }
    for name in SCOPE_LISTS:
        fields[name] = serializers.ListField(
            child=serializers.CharField(),
            required=required,
            help_text="The endpoints, one hostname, IP address or agent GUID each; the list "
            "replaces the current one (an empty list removes them all).",
        )
    return fields


SETTINGS_VALUES = inline_serializer("ApprovalSettingsValues", _settings_fields(required=False))
SETTINGS_REPLACED = inline_serializer("ApprovalSettingsReplaced", _settings_fields(required=True))
SETTINGS = inline_serializer(
    "ApprovalSettings",
    {
        "settings": SETTINGS_VALUES,
        "version": serializers.IntegerField(),
        "updated_at": serializers.DateTimeField(allow_null=True),
    },
)
IF_MATCH = OpenApiParameter(
    "If-Match",
    str,
    location=OpenApiParameter.HEADER,
    required=True,
    description='The ETag of the settings read, e.g. "approval-settings-3".',
)
ETAG = {"ETag": {"schema": {"type": "string"}, "description": "The settings' version."}}


@extend_schema(
    methods=["GET"],
    summary="The organization's approval settings (any member), with their ETag",
    responses={200: SETTINGS, **ERRORS},
)
@extend_schema(
    methods=["PATCH"],
    summary="Change some approval settings (admins), with If-Match: the page's form and rules",
    description="Changes the settings it names, the others stay. Without If-Match: 428; with "
    "the ETag of an older version: 412, saying when and what changed.",
    parameters=[IF_MATCH],
    request=SETTINGS_VALUES,
    responses={200: SETTINGS, **ERRORS, **problems(400, 409, 412, 413, 428)},
)
@extend_schema(
    methods=["PUT"],
    summary="Replace the approval settings (admins), with If-Match: the page's form and rules",
    description="Names every setting (those per action may be left out: they stay). Without "
    "If-Match: 428; with the ETag of an older version: 412, saying when and what changed.",
    parameters=[IF_MATCH],
    request=SETTINGS_REPLACED,
    responses={200: SETTINGS, **ERRORS, **problems(400, 409, 412, 413, 428)},
)
@api_view(["GET", "PUT", "PATCH"])
def approval_settings(request: Request, slug: str) -> Response:
    changing = request.method != "GET"
    membership = membership_for(request, slug, roles=[Role.ADMIN] if changing else None)
    organization = membership.organization
    current = ApprovalSettings.for_organization(organization)
    editable = membership.role == Role.ADMIN
    if not changing:
        return _settings_response(_settings_form(organization, current, editable=editable))
    refused = _precondition(request, current)
    if refused is not None:
        return refused
    if not isinstance(request.data, dict):
        raise FormInvalid({"__all__": ["Expected a JSON object of settings by name."]})
    blank = _settings_form(organization, current, editable=True)
    data, files = _settings_changes(blank, request.data, whole=request.method == "PUT")
    form = _settings_form(organization, current, editable=True, data=data, files=files)
    if not form.is_valid():
        raise FormInvalid(_form_errors(form))
    try:
        saved = services.update_approval_settings(
            organization,
            actor=request.user,
            values=form.values(),
            version=current.version,
            context=_context(request),
        )
    except services.StaleSettings:
        return _stale_settings(ApprovalSettings.for_organization(organization))
    return _settings_response(_settings_form(organization, saved, editable=True))


# Audit events: the audit page's filters, newest first, in keyset pages


class AuditPagination(KeysetPagination):
    page_size = 50
    # The log's own index: `chain = ? AND sequence < ? ORDER BY sequence DESC`.
    ordering = ("-sequence",)

    def usable(self, position: str) -> bool:
        return position.isascii() and position.isdigit() and int(position) <= LAST_SEQUENCE


AUDIT_EVENT = inline_serializer(
    "AuditEvent",
    {
        "id": serializers.IntegerField(),
        "sequence": serializers.IntegerField(),
        "timestamp": serializers.DateTimeField(),
        "actor": serializers.CharField(help_text="The username, or empty for the system."),
        "role": serializers.CharField(),
        "verb": serializers.CharField(),
        "request": serializers.UUIDField(allow_null=True),
        "action": serializers.CharField(),
        "data": serializers.DictField(),
        "source": serializers.CharField(),
        "ip_address": serializers.CharField(allow_null=True),
        "user_agent": serializers.CharField(),
        "prev_hash": serializers.CharField(),
        "hash": serializers.CharField(),
    },
)


def _audit_event_json(event: AuditEvent) -> dict:
    return {
        "id": event.pk,
        "sequence": event.sequence,
        "timestamp": _iso(event.timestamp),
        "actor": event.actor_username,
        "role": event.role,
        "verb": event.verb,
        "request": str(event.request.uuid) if event.request_id else None,
        "action": event.action_key,
        "data": event.data,
        "source": event.source,
        "ip_address": normalized_ip(event.ip_address) if event.ip_address else None,
        "user_agent": event.user_agent,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


@extend_schema(
    summary="The organization's audit events, newest first, with the filters of the audit page",
    parameters=[
        OpenApiParameter("since", str, description="From, e.g. 2025-01-31T14:30 (portal time)."),
        OpenApiParameter("until", str, description="To, e.g. 2025-01-31T15:00, inclusive."),
        OpenApiParameter("actor", str, description="A username."),
        OpenApiParameter("actor_match", str, enum=["exact", "contains"]),
        OpenApiParameter("verb", str, enum=list(VERBS)),
        OpenApiParameter("action", str, description="An action key."),
        OpenApiParameter("request", str, description="A request's UUID."),
        OpenApiParameter("source", str, enum=[s.value for s in Source]),
        OpenApiParameter("q", str, description="Words of the verb, actor, action or data."),
        OpenApiParameter("cursor", str),
        OpenApiParameter("page_size", int),
    ],
    responses={
        200: inline_serializer(
            "AuditEventPage",
            {
                "next": serializers.URLField(allow_null=True),
                "previous": serializers.URLField(allow_null=True),
                "results": serializers.ListField(child=AUDIT_EVENT),
            },
        ),
        **ERRORS,
        **problems(400),
    },
)
@api_view(["GET"])
def audit_events(request: Request, slug: str) -> Response:
    membership = membership_for(request, slug, roles=AUDIT_ROLES)
    filters = AuditFilter(
        {k: v for k, v in request.query_params.items() if k not in AuditFilter.CURSORS}
    )
    if not filters.is_valid():
        raise FormInvalid({k: list(v) for k, v in filters.errors.items()})
    events = filters.apply(chain_of(membership.organization)).select_related("request")
    paginator = AuditPagination()
    page = paginator.paginate_queryset(events, request)
    return paginator.get_paginated_response([_audit_event_json(e) for e in page])

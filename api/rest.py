"""The portal's own REST API, `/api/v1/`: thin views over the services the pages call."""

import hashlib
import json
import uuid
from itertools import groupby
from uuid import UUID

from django import forms
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError, transaction
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from actions.models import CATEGORY_ORDER, ResponseAction
from approvals import services
from approvals.decision import decide
from approvals.decision_forms import ApproveForm, RejectForm
from approvals.forms import form_for
from approvals.lookups import get_request_for
from approvals.models import ActionRequest, ApprovalSettings, RequestStatus
from approvals.transitions import SubmissionRefused
from approvals.views import RequestFilter
from audit.context import AuditContext
from audit.models import Source
from responseportal.models import Role

from .access import membership_for
from .models import IdempotencyKey
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
ERRORS = {code: PROBLEM for code in (401, 403, 404, 429)}

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
DETAIL = inline_serializer(
    "ActionRequestDetail",
    {
        **REQUEST_FIELDS,
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
CHANGE_ERRORS = {**ERRORS, 400: PROBLEM, 409: PROBLEM}


def _request_json(action_request: ActionRequest, targets=None) -> dict:
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
        "targets": [
            {"kind": t.kind, "value": t.value, "status": t.status, "message": t.message}
            for t in (targets if targets is not None else action_request.targets.all())
        ],
    }


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


class RequestPagination(CursorPagination):
    page_size = 50
    ordering = ("-submitted_at", "-id")
    max_page_size = 100
    page_size_query_param = "page_size"


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
        400: PROBLEM,
    },
)
@extend_schema(
    methods=["POST"],
    summary="Submit a request (Idempotency-Key: the same key and body return the same request)",
    request=SUBMISSION,
    operation_id="requests_submit",
    parameters=[OpenApiParameter("Idempotency-Key", str, location=OpenApiParameter.HEADER)],
    responses={201: DETAIL, 200: DETAIL, **CHANGE_ERRORS, 422: PROBLEM},
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
    return paginator.get_paginated_response([_request_json(r) for r in page])


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
        used = (
            IdempotencyKey.objects.select_related("action_request")
            .filter(user=request.user, organization=organization, key=key_text)
            .first()
        )
        if used is not None:
            if used.body_sha256 != digest:
                return problem(
                    422,
                    f"The Idempotency-Key `{key_text}` was already used at "
                    f"{_iso(used.created_at)} with another body: expected the same body, or a "
                    "new key for a new request.",
                )
            return Response(_detail(used.action_request), status=200)
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
    return Response(_detail(created), status=201)


def _detail(action_request: ActionRequest) -> dict:
    action_request = (
        ActionRequest.objects.select_related("action", "requester", "decided_by")
        .prefetch_related("targets")
        .get(pk=action_request.pk)
    )
    return {
        **_request_json(action_request),
        "timeline": [
            {
                "timestamp": _iso(event.timestamp),
                "verb": event.verb,
                "actor": event.actor_username,
                "source": event.source,
                "data": event.data,
            }
            for event in action_request.events.order_by("timestamp", "id")
        ],
    }


@extend_schema(
    summary="One request, with its targets and timeline", responses={200: DETAIL, **ERRORS}
)
@api_view(["GET"])
def request_detail(request: Request, slug: str, uuid: UUID) -> Response:
    membership_for(request, slug)
    _, action_request = get_request_for(request.user, slug, uuid)
    return Response(_detail(action_request))


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
    return Response(_detail(action_request))


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
    return Response(_detail(action_request))

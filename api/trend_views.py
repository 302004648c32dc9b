"""`/v3.0/response/…`: the Trend Vision One v3.0 calls, answered as Trend Vision One does.

Token authentication and the per-token rate limit of the API; every answer is
`application/json`, errors as `{"error": {"code": …, "message": …}}`; no CSRF (no session is
read), no trailing slash and no redirect. These views stay out of the `/api/v1/` schema.
"""

import json
import logging

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView, set_rollback

from audit.context import AuditContext
from audit.models import Source
from responseportal.models import Role

from . import trend
from .access import membership_for
from .middleware import TREND, body_limit

log = logging.getLogger(__name__)

CODES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "AccessDenied",
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    429: "TooManyRequests",
    500: "InternalServerError",
}


def error(status: int, message: str, code: str | None = None) -> Response:
    return Response(
        {"error": {"code": code or CODES.get(status, "Error"), "message": message}}, status=status
    )


def exception_handler(exc, context):
    """Every refusal as Trend's `{"error": {"code", "message"}}`, in JSON."""
    headers = {}
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or "Your role does not allow this.")
    elif isinstance(exc, RequestDataTooBig):
        # BodyLimitMiddleware refuses these first; a parser's refusal reads the same.
        return error(413, f"The body is too large: expected at most {body_limit(TREND)} bytes.")
    if isinstance(exc, exceptions.APIException):
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None) is not None:
            headers["Retry-After"] = str(max(1, int(exc.wait + 0.999)))
        detail = exc.detail
        if isinstance(detail, dict | list):
            detail = " ".join(
                str(v) for v in (detail.values() if isinstance(detail, dict) else detail)
            )
        response = error(exc.status_code, str(detail))
    else:
        log.exception("The Trend Vision One compatible API failed", exc_info=exc)
        response = error(500, "The portal failed to answer; the failure is logged.")
    set_rollback()
    for name, value in headers.items():
        response[name] = value
    return response


class JsonOnly(BaseContentNegotiation):
    """JSON whatever the client accepts: Trend's clients read nothing else."""

    def select_parser(self, request, parsers):
        return None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class TrendView(APIView):
    schema = None  # not part of the /api/v1/ OpenAPI schema
    parser_classes = []  # the body is read here, with its own limits and messages
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JsonOnly

    def get_exception_handler(self):
        return exception_handler


def _context(request: Request) -> AuditContext:
    base = AuditContext.from_request(request._request, source=Source.API)
    return AuditContext(
        source=base.source,
        ip_address=base.ip_address,
        user_agent=base.user_agent,
        api_token=request.auth.name,
    )


def _items(request: Request) -> list:
    """The body's JSON array of items; a 400 (or 413, 415) for anything else."""
    media_type = request.content_type.split(";")[0].strip().lower()
    if media_type != "application/json":
        raise exceptions.UnsupportedMediaType(
            request.content_type or "(none)",
            detail=f"The body's Content-Type is `{request.content_type or '(none)'}`: expected "
            "application/json.",
        )
    raw = request._request.body
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise exceptions.ParseError(
            "The body is not JSON: expected a JSON array of items."
        ) from None
    if not isinstance(body, list):
        raise exceptions.ParseError(
            f"The body is a JSON {type(body).__name__}: expected a JSON array of items, one per "
            "target."
        )
    if not body:
        raise exceptions.ParseError("The body is an empty array: expected at least one item.")
    if len(body) > trend.MAX_ITEMS:
        raise exceptions.ParseError(
            f"The body has {len(body)} items: expected at most {trend.MAX_ITEMS} per call."
        )
    return body


class CallView(TrendView):
    """POST one of trend.CALLS: 207 with one entry per item, in order."""

    call: trend.Call | None = None  # set by as_view(call=…)

    def post(self, request: Request) -> Response:
        organization = request.auth.organization
        membership_for(request, organization.slug, roles=[Role.OPERATOR])
        if self.call.path not in _active_paths():
            return _unsupported(request)
        items = _items(request)
        outcomes = trend.submit_items(
            self.call,
            items,
            organization=organization,
            actor=request.user,
            context=_context(request),
        )
        entries = []
        for outcome in outcomes:
            if outcome.refusal is not None:
                entries.append(
                    {
                        "status": 400,
                        "body": {
                            "error": {
                                "code": outcome.refusal.code,
                                "message": outcome.refusal.message,
                            }
                        },
                    }
                )
                continue
            location = request.build_absolute_uri(
                f"/v3.0/response/tasks/{trend.task_id(outcome.target, outcome.request)}"
            )
            entries.append(
                {"status": 202, "headers": [{"name": "Operation-Location", "value": location}]}
            )
        return Response(entries, status=207)


def _active_paths() -> set[str]:
    return {
        path.removeprefix("POST /v3.0/response/")
        for path in trend.supported_calls()
        if path.startswith("POST ")
    }


def _unsupported(request: Request) -> Response:
    return error(
        400,
        f"{request.method} {request.path} is not a call this portal supports (paths have no "
        f"trailing slash). Supported: {'; '.join(trend.supported_calls())}.",
    )


class TaskView(TrendView):
    def get(self, request: Request, task_id: str) -> Response:
        organization = request.auth.organization
        membership_for(request, organization.slug)
        target = trend.find_task(organization, task_id)
        if target is None:
            raise Http404(f"No task {task_id} in {organization.name}.")
        return Response(trend.task_json(target))


class UnsupportedView(TrendView):
    """Any other path under /v3.0: a 400 naming the supported calls."""

    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def _answer(self, request: Request, *args, **kwargs) -> Response:
        return _unsupported(request)

    get = post = put = patch = delete = options = _answer

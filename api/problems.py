"""Every error of the API as `application/problem+json` (RFC 9457).

`detail` says what is wrong and what is expected; a validation error also lists, per field,
the same messages as the form of the pages (`errors`, with `__all__` for the whole request).
"""

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from responseportal.refusals import TransitionRefused

PROBLEM = "application/problem+json"

TITLES = {
    400: "Invalid request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    412: "Precondition failed",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Unprocessable request",
    428: "Precondition required",
    429: "Too many requests",
}


class FormInvalid(exceptions.APIException):
    """A form of the pages refused the request: its messages, per field."""

    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        first = next(iter(errors.values()), ["The request is invalid."])[0]
        super().__init__(detail=first)


class TooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE


class Refused(exceptions.APIException):
    """A service refused the change (stale decision, separation of duties, decision rule)."""

    status_code = status.HTTP_409_CONFLICT


def problem(status_code: int, detail: str, **extra) -> Response:
    body = {
        "type": "about:blank",
        "title": TITLES.get(status_code, "Error"),
        "status": status_code,
        "detail": detail,
        **extra,
    }
    return Response(body, status=status_code, content_type=PROBLEM)


def exception_handler(exc, context):
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or "Your role does not allow this.")
    elif isinstance(exc, TransitionRefused):
        exc = Refused(exc.message)
    elif isinstance(exc, RequestDataTooBig):
        exc = TooLarge(
            f"The body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE:,} bytes: "
            "send less at a time."
        )
    if not isinstance(exc, exceptions.APIException):
        return None
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None) is not None:
        headers["Retry-After"] = str(max(1, int(exc.wait + 0.999)))
    extra = {}
    if isinstance(exc, FormInvalid):
        extra["errors"] = exc.errors
        detail = str(exc.detail)
    elif isinstance(exc.detail, dict | list):
        # DRF's own parsers and serializers: flatten to per-field lists of strings.
        errors = exc.detail if isinstance(exc.detail, dict) else {"__all__": exc.detail}
        extra["errors"] = {
            str(k): [str(m) for m in (v if isinstance(v, list) else [v])] for k, v in errors.items()
        }
        detail = next(iter(extra["errors"].values()), ["The request is invalid."])[0]
    else:
        detail = str(exc.detail)
    set_rollback()
    response = problem(exc.status_code, detail, **extra)
    for name, value in headers.items():
        response[name] = value
    return response

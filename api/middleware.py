"""One size limit for every body sent to the API, checked before anything reads it.

A body larger than the limit is answered 413 in the API's own error format, whatever the
route, the method or the token: `application/problem+json` under `/api/v1/`, Trend's
`{"error": {"code", "message"}}` under `/v3.0`. Nothing behind it (authentication, the
view, a parser) reads such a body, so no route can accept one or answer Django's HTML 400.
"""

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from .problems import PROBLEM, TITLES

V1 = "/api/v1/"
TREND = "/v3.0"
# Trend's calls take at most 100 items: a mebibyte holds the longest fields many times over.
TREND_MAX_BODY_BYTES = 1_048_576


def body_limit(path: str) -> int | None:
    """The most bytes a body may have on `path`; None outside the API."""
    if path.startswith(V1):
        return settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if path == TREND or path.startswith(TREND + "/"):
        return min(TREND_MAX_BODY_BYTES, settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    return None


def too_large(path: str, limit: int) -> HttpResponse:
    if path.startswith(V1):
        return JsonResponse(
            {
                "type": "about:blank",
                "title": TITLES[413],
                "status": 413,
                "detail": f"The body is larger than {limit:,} bytes: send less at a time.",
            },
            status=413,
            content_type=PROBLEM,
        )
    return JsonResponse(
        {
            "error": {
                "code": "RequestEntityTooLarge",
                "message": f"The body is too large: expected at most {limit} bytes.",
            }
        },
        status=413,
    )


class BodyLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = body_limit(request.path_info)
        if limit is not None:
            length = request.META.get("CONTENT_LENGTH") or "0"
            # Not a number: the size is unknown, and nothing reads past a limit it cannot check.
            if not (length.isascii() and length.isdigit()) or int(length) > limit:
                return too_large(request.path_info, limit)
        return self.get_response(request)

"""Step-up: a second factor confirmed recently, asked again before the changes that matter.

`confirm_second_factor(request, kind)` is the one way a session records that its user proved a
second factor (an authenticator code, a passkey, a recovery code, or an identity provider's
multi-factor claim); `step_up_required` guards a view whose POST must follow such a proof made
within the last STEP_UP_MAX_AGE seconds.

Without a recent proof, the guarded POST is not run: the portal answers with a page asking for
the second factor, whose form carries the POST's fields (and keeps its files in the session),
so that confirming completes the very same change with nothing typed again.
"""

import base64
import secrets
import time
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.datastructures import MultiValueDict

from responseportal.access import membership_of

from .factors import has_second_factor, organizations_requiring, verify_code
from .kinds import IDP, KINDS, RECOVERY, TOTP, WEBAUTHN
from .lockout import count_failure, locked_out

__all__ = [
    "IDP",
    "KINDS",
    "RECOVERY",
    "TOTP",
    "WEBAUTHN",
    "confirm_second_factor",
    "recent_second_factor",
    "step_up_required",
]

SESSION_KEY = "second_factor"
CODE_FIELD = "step_up_code"
FILES_FIELD = "step_up_files"
FILES_KEY = "step_up_files"
# Uploads kept in the session while the second factor is asked (a scope CSV is far smaller).
MAX_KEPT_BYTES = 2 * 1024 * 1024
# Fields of the guarded form that the step-up page does not carry over.
NOT_CARRIED = {"csrfmiddlewaretoken", CODE_FIELD, FILES_FIELD}


def confirm_second_factor(request: HttpRequest, kind: str) -> None:
    """Record in the session that its user has just proved a second factor of `kind`
    (one of KINDS). Call it after `login()`: signing in starts a new session."""
    if kind not in KINDS:
        raise ValueError(f"{kind!r} is not a kind of second factor: expected one of {KINDS}.")
    request.session[SESSION_KEY] = {"at": int(time.time()), "kind": kind}


def recent_second_factor(request: HttpRequest) -> str | None:
    """The kind of the second factor this session proved within STEP_UP_MAX_AGE, else None."""
    proof = request.session.get(SESSION_KEY)
    if not isinstance(proof, dict) or proof.get("kind") not in KINDS:
        return None
    at = proof.get("at")
    if not isinstance(at, int) or not 0 <= time.time() - at <= settings.STEP_UP_MAX_AGE:
        return None
    return proof["kind"]


def _required_of(user, slug: str | None) -> bool:
    """Whether the organization `slug` (None: any of the user's) requires a second factor of
    the user. Step-up applies to every user with a second factor, and always where this is
    true."""
    if slug is None:
        return bool(organizations_requiring(user))
    membership = membership_of(user, slug)
    return membership is not None and membership.organization.requires_second_factor(
        membership.role
    )


def _keep_files(request: HttpRequest) -> str | None:
    """The POST's uploads, kept in the session under a new key (None if there are none)."""
    if not request.FILES:
        return None
    kept, size = [], 0
    for field, files in request.FILES.lists():
        for upload in files:
            size += upload.size or 0
            if size > MAX_KEPT_BYTES:
                return None
            kept.append(
                [
                    field,
                    upload.name,
                    upload.content_type or "application/octet-stream",
                    base64.b64encode(upload.read()).decode(),
                ]
            )
    key = secrets.token_urlsafe(16)
    request.session[FILES_KEY] = {key: kept}  # one pending change at a time
    return key


def _restore_files(request: HttpRequest) -> None:
    key = request.POST.get(FILES_FIELD)
    if not key:
        return
    kept = request.session.pop(FILES_KEY, {}).get(key, [])
    files = MultiValueDict()
    for field, name, content_type, content in kept:
        files.appendlist(
            field, SimpleUploadedFile(name, base64.b64decode(content), content_type=content_type)
        )
    request._files = files


def _ask(request: HttpRequest, error: str = "") -> HttpResponse:
    """The page asking for the second factor, carrying the POST to complete after it."""
    if request.headers.get("Accept", "").startswith("application/json"):
        return JsonResponse(
            {"error": "Confirm your second factor first.", "step_up": True}, status=403
        )
    files_key = request.POST.get(FILES_FIELD) or _keep_files(request)
    carried = [
        (name, value)
        for name, values in request.POST.lists()
        if name not in NOT_CARRIED
        for value in values
    ]
    return render(
        request,
        "accounts/step_up.html",
        {
            "carried": carried,
            "files_key": files_key,
            "lost_files": bool(request.FILES) and files_key is None,
            "action": request.get_full_path(),
            "error": error,
            "code_field": CODE_FIELD,
            "has_passkeys": request.user.passkeys.exists(),
            "max_age_minutes": settings.STEP_UP_MAX_AGE // 60,
        },
        status=403,
    )


def step_up_required(
    view: Callable | None = None,
    *,
    only_with_a_factor: bool = False,
    unless: Callable[[HttpRequest], bool] | None = None,
):
    """Run the view's POST only after a second factor confirmed within STEP_UP_MAX_AGE, for
    the users step-up applies to (those who have a second factor, and those the organization
    requires one of: `_required_of`; with `only_with_a_factor`, only users who have one: the
    pages that set the first one up); others, GETs, and POSTs for which `unless` is true (one
    that changes nothing, such as a preview) go straight through.

    The view finds the kind proved in `request.second_factor`, which the audit context of its
    change records. Put it under `login_required`.
    """
    if view is None:
        return lambda view: step_up_required(
            view, only_with_a_factor=only_with_a_factor, unless=unless
        )

    @wraps(view)
    def guarded(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.method != "POST" or (unless is not None and unless(request)):
            return view(request, *args, **kwargs)
        # The user's factors are read once, for whether step-up applies and whether it can.
        has_a_factor = has_second_factor(request.user)
        applies = has_a_factor or (
            not only_with_a_factor and _required_of(request.user, kwargs.get("slug"))
        )
        if not applies:
            return view(request, *args, **kwargs)
        if not has_a_factor:
            # Required by an organization, and nothing to confirm it with yet.
            messages.warning(request, "This change needs a second factor: set one up here first.")
            return redirect("security")
        kind = recent_second_factor(request)
        code = request.POST.get(CODE_FIELD)
        if kind is None and code is not None:
            # Guessing here is guessing at signing in: the same lockout counts both.
            if locked_out(request, request.user):
                return HttpResponse(status=429)
            kind = verify_code(request.user, code)
            if kind is None:
                count_failure(request, request.user)
                return _ask(
                    request,
                    "This code is not valid: type the code your authenticator app shows now, "
                    "or an unused recovery code.",
                )
            confirm_second_factor(request, kind)
        if kind is None:
            return _ask(request)
        if CODE_FIELD in request.POST or FILES_FIELD in request.POST:
            _restore_files(request)
            post = request.POST.copy()
            for name in (CODE_FIELD, FILES_FIELD):
                post.pop(name, None)
            request.POST = post
        request.second_factor = kind
        return view(request, *args, **kwargs)

    return guarded

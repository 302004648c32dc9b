"""Signing in with a second factor, the Security page, step-up by passkey, and an
organization's two-factor policy."""

import base64
import time

import segno
from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.context import AuditContext
from responseportal.access import get_membership
from responseportal.forms import SignInForm
from responseportal.models import Role
from responseportal.refusals import TransitionRefused

from . import passkeys, services
from .factors import has_second_factor, organizations_requiring, totp_device, verify_code
from .forms import CodeForm, PasskeyNameForm, SecondFactorPolicyForm, TotpConfirmForm
from .kinds import WEBAUTHN
from .lockout import count_failure, locked_out
from .models import Passkey
from .passkeys import PasskeyRefused
from .stepup import confirm_second_factor, recent_second_factor, step_up_required

PENDING_KEY = "sign_in_pending"
# How long the second step may wait for its code after the password was accepted.
PENDING_SECONDS = 5 * 60
WRONG_CODE = (
    "This code is not valid: type the code your authenticator app shows now (each code works "
    "once), or an unused recovery code."
)


def _warn_of_requirements(request: HttpRequest, user) -> None:
    if has_second_factor(user):
        return
    for organization in organizations_requiring(user):
        messages.warning(
            request,
            f"{organization.name} requires a second factor: set one up on your Security page "
            "to use it.",
        )


class SignInView(LoginView):
    """The password step; a user with a second factor then goes on to the code step."""

    authentication_form = SignInForm
    redirect_authenticated_user = True

    def form_valid(self, form):
        user = form.get_user()
        if has_second_factor(user):
            self.request.session[PENDING_KEY] = {
                "user": user.pk,
                "backend": user.backend,
                "at": int(time.time()),
                "next": self.get_success_url(),
            }
            return redirect("sign_in_second_factor")
        response = super().form_valid(form)
        _warn_of_requirements(self.request, user)
        return response


def _pending(request: HttpRequest):
    """The user whose password was accepted and who has yet to give a second factor."""
    pending = request.session.get(PENDING_KEY)
    if not isinstance(pending, dict) or time.time() - pending.get("at", 0) > PENDING_SECONDS:
        return None, None
    user = get_user_model()._default_manager.filter(pk=pending.get("user"), is_active=True)
    return user.first(), pending


def _complete_sign_in(request: HttpRequest, user, pending: dict, kind: str) -> str:
    """Sign the user in with their second factor; where to go next."""
    request.session.pop(PENDING_KEY, None)
    login(request, user, backend=pending["backend"])
    confirm_second_factor(request, kind)
    target = pending.get("next") or reverse("home")
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = reverse("home")
    return target


@never_cache
@require_http_methods(["GET", "POST"])
def second_factor(request: HttpRequest) -> HttpResponse:
    user, pending = _pending(request)
    if user is None:
        messages.info(request, "Sign in with your password first.")
        return redirect("login")
    form = CodeForm(request.POST or None)
    if request.method == "POST":
        if locked_out(request, user):
            return HttpResponse(status=429)
        if form.is_valid():
            kind = verify_code(user, form.cleaned_data["code"])
            if kind is not None:
                return redirect(_complete_sign_in(request, user, pending, kind))
            form.add_error("code", WRONG_CODE)
            count_failure(request, user)
    return render(
        request,
        "accounts/second_factor.html",
        {
            "form": form,
            "has_passkeys": user.passkeys.exists(),
            "has_totp": totp_device(user) is not None,
        },
        status=400 if form.errors else 200,
    )


def _json_error(message: str, status: int = 400) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


@never_cache
@require_POST
def second_factor_passkey_options(request: HttpRequest) -> HttpResponse:
    user, _ = _pending(request)
    if user is None:
        return _json_error("Sign in with your password first.", 403)
    options = passkeys.authentication_options(request, user, "sign_in")
    return HttpResponse(options, content_type="application/json")


@never_cache
@require_POST
def second_factor_passkey(request: HttpRequest) -> HttpResponse:
    user, pending = _pending(request)
    if user is None:
        return _json_error("Sign in with your password first.", 403)
    if locked_out(request, user):
        return _json_error("Too many failed attempts: try again later.", 429)
    try:
        passkeys.verify_authentication(request, user, request.body, "sign_in")
    except PasskeyRefused as refusal:
        count_failure(request, user)
        return _json_error(str(refusal))
    return JsonResponse({"redirect": _complete_sign_in(request, user, pending, WEBAUTHN)})


# The Security page


def _context(request: HttpRequest) -> AuditContext:
    return AuditContext.from_request(request)


@never_cache
@login_required
def security(request: HttpRequest) -> HttpResponse:
    user = request.user
    return render(
        request,
        "accounts/security.html",
        {
            "totp": totp_device(user),
            "passkeys": Passkey.objects.filter(user=user),
            "recovery_left": services.recovery_codes_left(user),
            "has_factor": has_second_factor(user),
            "required_by": organizations_requiring(user),
            "recent": recent_second_factor(request),
            "name_form": PasskeyNameForm(),
        },
    )


@login_required
@require_POST
@step_up_required(only_with_a_factor=True)
def security_confirm(request: HttpRequest) -> HttpResponse:
    """Confirm a second factor now, before changing them (a passkey is added by script, which
    cannot go through the step-up page itself)."""
    messages.success(request, "Second factor confirmed.")
    return redirect("security")


def _svg_qr(uri: str) -> str:
    # segno draws the QR code as an SVG element in the page: no image is fetched.
    return mark_safe(segno.make(uri, error="m").svg_inline(scale=4, dark="#000", light="#fff"))  # noqa: S308


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
@step_up_required(only_with_a_factor=True)
def totp_setup(request: HttpRequest) -> HttpResponse:
    user = request.user
    if totp_device(user) is not None:
        messages.info(
            request, "You already have an authenticator app: remove it to set up another."
        )
        return redirect("security")
    form = TotpConfirmForm(request.POST or None)
    device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    if request.method == "POST" and device is not None and form.is_valid():
        try:
            services.confirm_totp(
                device.pk, actor=user, code=form.cleaned_data["code"], context=_context(request)
            )
        except TransitionRefused as refusal:
            form.add_error("code", refusal.message)
        else:
            confirm_second_factor(request, "totp")
            messages.success(
                request,
                "Authenticator app added. Make recovery codes now, in case you lose it.",
            )
            return redirect("security")
    if device is None:
        device = services.start_totp(user)
        if request.method == "POST":
            form.add_error(None, "This set-up had expired: scan the new secret below.")
    secret = base64.b32encode(device.bin_key).decode()
    return render(
        request,
        "accounts/totp_setup.html",
        {"form": form, "secret": secret, "qr": _svg_qr(device.config_url)},
        status=400 if form.errors else 200,
    )


@login_required
@require_POST
@step_up_required(only_with_a_factor=True)
def totp_remove(request: HttpRequest) -> HttpResponse:
    try:
        services.remove_totp(actor=request.user, context=_context(request))
    except TransitionRefused as refusal:
        messages.error(request, refusal.message)
    else:
        messages.success(request, "Authenticator app removed.")
    return redirect("security")


@never_cache
@login_required
@require_POST
@step_up_required(only_with_a_factor=True)
def recovery_codes(request: HttpRequest) -> HttpResponse:
    try:
        codes = services.generate_recovery_codes(actor=request.user, context=_context(request))
    except TransitionRefused as refusal:
        messages.error(request, refusal.message)
        return redirect("security")
    return render(request, "accounts/recovery_codes.html", {"codes": codes})


@never_cache
@login_required
@require_POST
@step_up_required(only_with_a_factor=True)
def passkey_register_options(request: HttpRequest) -> HttpResponse:
    options = passkeys.registration_options(request, request.user)
    return HttpResponse(options, content_type="application/json")


@never_cache
@login_required
@require_POST
@step_up_required(only_with_a_factor=True)
def passkey_register(request: HttpRequest) -> HttpResponse:
    try:
        stored = passkeys.verify_registration(request, request.body)
        name_form = PasskeyNameForm({"name": passkeys.answer_name(request.body)})
        if not name_form.is_valid():
            return _json_error(" ".join(name_form.errors["name"]))
        services.add_passkey(
            actor=request.user,
            name=name_form.cleaned_data["name"],
            context=_context(request),
            **stored,
        )
    except PasskeyRefused as refusal:
        return _json_error(str(refusal))
    except TransitionRefused as refusal:
        return _json_error(refusal.message)
    confirm_second_factor(request, WEBAUTHN)
    messages.success(request, f"Passkey “{name_form.cleaned_data['name']}” added.")
    return JsonResponse({"redirect": reverse("security")})


@login_required
@require_POST
@step_up_required(only_with_a_factor=True)
def passkey_remove(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        services.remove_passkey(pk, actor=request.user, context=_context(request))
    except TransitionRefused as refusal:
        messages.error(request, refusal.message)
    else:
        messages.success(request, "Passkey removed.")
    return redirect("security")


# Step-up with a passkey: the step-up page's button, before it re-posts the guarded form.


@never_cache
@login_required
@require_POST
def step_up_passkey_options(request: HttpRequest) -> HttpResponse:
    if not request.user.passkeys.exists():
        return _json_error("You have no passkey: use your authenticator app's code.")
    options = passkeys.authentication_options(request, request.user, "step_up")
    return HttpResponse(options, content_type="application/json")


@never_cache
@login_required
@require_POST
def step_up_passkey(request: HttpRequest) -> HttpResponse:
    if locked_out(request, request.user):
        return _json_error("Too many failed attempts: try again later.", 429)
    try:
        passkeys.verify_authentication(request, request.user, request.body, "step_up")
    except PasskeyRefused as refusal:
        count_failure(request, request.user)
        return _json_error(str(refusal))
    confirm_second_factor(request, WEBAUTHN)
    return JsonResponse({"confirmed": WEBAUTHN})


# An organization's policy


@login_required
@require_http_methods(["GET", "POST"])
@step_up_required
def second_factor_policy(request: HttpRequest, slug: str) -> HttpResponse:
    membership = get_membership(request.user, slug, roles=[Role.ADMIN])
    organization = membership.organization
    if request.method == "POST":
        form = SecondFactorPolicyForm(request.POST)
        if form.is_valid():
            policy = form.cleaned_data["second_factor_policy"]
            try:
                services.change_second_factor_policy(
                    organization.pk, actor=request.user, policy=policy, context=_context(request)
                )
            except TransitionRefused as refusal:
                form.add_error(None, refusal.message)
            else:
                messages.success(request, "Two-factor policy saved.")
                return redirect("second_factor_policy", slug)
    else:
        form = SecondFactorPolicyForm(
            initial={"second_factor_policy": organization.second_factor_policy}
        )
    return render(
        request,
        "accounts/policy.html",
        {"organization": organization, "membership": membership, "form": form},
        status=400 if form.errors else 200,
    )

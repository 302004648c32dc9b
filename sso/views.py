"""Single sign-on pages: pick the organization's provider, go there, come back signed in;
and the page where an organization's admin registers its provider."""

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth import login as sign_in_session
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods

from accounts.stepup import IDP, confirm_second_factor, step_up_required
from audit.chain import AuditLogJammed, chain_of, record
from audit.context import AuditContext
from audit.flood import admit, failure_gates
from responseportal.access import get_membership
from responseportal.models import Role
from responseportal.refusals import TransitionRefused

from . import oidc, services
from .forms import IdentityProviderForm, ProviderChoiceForm
from .models import IdentityProvider
from .services import SignInRefused

SOURCE = "sso"
NEXT_KEY = "sso_next"
# The provider's multi-factor methods (`amr`) that counted as this session's second factor.
IDP_FACTOR_KEY = "sso_idp_second_factor"


def _safe_next(request: HttpRequest, target: str) -> str:
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return ""


def _refused(request: HttpRequest, refusal: TransitionRefused, provider=None, email=""):
    """The refusal page; a refused sign-in through a provider is recorded in its organization."""
    if provider is not None:
        context = AuditContext.from_request(request, SOURCE)
        try:
            with transaction.atomic():
                organization = provider.organization
                if admit(chain_of(organization), failure_gates(context.ip_address)):
                    record(
                        organization,
                        "auth.sign_in_failed",
                        actor_username=email,
                        data={"method": "single sign-on", "reason": refusal.message[:500]},
                        context=context,
                    )
        except AuditLogJammed:
            pass  # alerted where raised; the user is refused all the same
    return render(request, "sso/refused.html", {"message": refusal.message}, status=403)


@require_http_methods(["GET", "POST"])
def choose(request: HttpRequest) -> HttpResponse:
    """The e-mail address's domain picks the organization(s) whose provider to sign in with."""
    if request.method == "GET":
        form = ProviderChoiceForm(initial={"next": request.GET.get("next", "")[:2000]})
        return render(request, "sso/choose.html", {"form": form, "providers": []})
    form = ProviderChoiceForm(request.POST)
    providers = []
    if form.is_valid():
        email = form.cleaned_data["email"]
        domain = email.rpartition("@")[2]
        providers = [
            provider
            for provider in IdentityProvider.objects.select_related("organization").order_by(
                "organization__name"
            )
            if domain in provider.allowed_domains
        ]
        if not providers:
            form.add_error(
                "email",
                f"No organization signs in with an identity provider for {domain}: sign in "
                "with your username and password.",
            )
        elif len(providers) == 1:
            return _go(request, providers[0], email, form.cleaned_data["next"])
    return render(request, "sso/choose.html", {"form": form, "providers": providers})


def _go(request: HttpRequest, provider: IdentityProvider, login_hint: str, next_url: str):
    """A page that moves on to the provider by itself (see sso/continue.html for why)."""
    query = {"login_hint": login_hint, **({"next": next_url} if next_url else {})}
    url = reverse("sso_login", args=[provider.organization.slug]) + "?" + urlencode(query)
    return render(request, "sso/continue.html", {"url": url, "organization": provider.organization})


@require_GET
def start(request: HttpRequest, slug: str) -> HttpResponse:
    """Off to the organization's provider (a bookmarkable address for its members)."""
    provider = get_object_or_404(
        IdentityProvider.objects.select_related("organization"), organization__slug=slug
    )
    login_hint = request.GET.get("login_hint", "")[:254].replace("\x00", "")
    request.session[NEXT_KEY] = _safe_next(request, request.GET.get("next", ""))
    redirect_uri = request.build_absolute_uri(reverse("sso_callback", args=[slug]))
    try:
        return oidc.authorization_redirect(request, provider, redirect_uri, login_hint)
    except SignInRefused as refusal:
        return _refused(request, refusal)


@require_GET
def callback(request: HttpRequest, slug: str) -> HttpResponse:
    """Where the provider sends the user back: verify, find or create the user, sign in."""
    provider = get_object_or_404(
        IdentityProvider.objects.select_related("organization"), organization__slug=slug
    )
    email = ""
    try:
        claims, userinfo = oidc.verified_claims(request, provider)
        email = claims.email
        user = services.sign_in(
            provider, claims, context=AuditContext.from_request(request, SOURCE)
        )
    except SignInRefused as refusal:
        return _refused(request, refusal, provider, email)
    next_url = request.session.pop(NEXT_KEY, "")
    # The sign-in event (audit.signals) takes its source from here.
    request.audit_source = SOURCE
    sign_in_session(request, user, backend="django.contrib.auth.backends.ModelBackend")
    if provider.amr_satisfies_step_up:
        methods = oidc.multi_factor(userinfo)
        if methods:
            _confirm_idp_factor(request, methods)
    return redirect(_safe_next(request, next_url) or "home")


def _confirm_idp_factor(request: HttpRequest, methods: str) -> None:
    request.session[IDP_FACTOR_KEY] = methods
    confirm_second_factor(request, IDP)


@login_required
@step_up_required
@require_http_methods(["GET", "POST"])
def provider_settings(request: HttpRequest, slug: str) -> HttpResponse:
    """An admin of the organization registers or changes its identity provider."""
    membership = get_membership(request.user, slug, roles=[Role.ADMIN])
    organization = membership.organization
    provider = IdentityProvider.objects.filter(organization=organization).first()
    if request.method == "POST":
        form = IdentityProviderForm(request.POST)
        if form.is_valid():
            try:
                services.save_identity_provider(
                    organization,
                    actor=request.user,
                    values=form.values(),
                    client_secret=form.cleaned_data["client_secret"],
                    version=form.cleaned_data["version"],
                    context=AuditContext.from_request(request),
                )
            except TransitionRefused as refusal:
                form.add_error(None, refusal.message)
            else:
                messages.success(request, "Single sign-on settings saved.")
                return redirect("sso_settings", slug)
    else:
        form = IdentityProviderForm(initial=IdentityProviderForm.initial_for(provider))
    return render(
        request,
        "sso/provider_settings.html",
        {
            "organization": organization,
            "membership": membership,
            "provider": provider,
            "form": form,
            "redirect_uri": request.build_absolute_uri(reverse("sso_callback", args=[slug])),
            "start_url": request.build_absolute_uri(reverse("sso_login", args=[slug])),
        },
    )

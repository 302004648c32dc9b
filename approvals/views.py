import uuid as uuid_module
from collections import Counter
from itertools import groupby
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count, Exists, IntegerField, OuterRef, Prefetch, Q, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from accounts.stepup import step_up_required
from actions.models import CATEGORY_ORDER, Category, ResponseAction
from audit.context import AuditContext
from audit.models import Source
from responseportal.access import get_membership
from responseportal.forms import search_input, select
from responseportal.models import Role

from . import services, undo
from .decision import decide
from .decision_forms import (
    APPROVE,
    MAX_ALL_MATCHING,
    REJECT,
    ApproveForm,
    BulkDecisionForm,
    DecideAllMatchingForm,
    RejectForm,
    problems,
)
from .forms import form_for
from .lookups import get_request_for
from .models import (
    ActionRequest,
    Approval,
    ApprovalMode,
    ApprovalSettings,
    RequestStatus,
    RequestTarget,
)
from .transitions import SubmissionRefused, TransitionRefused

PAGE_SIZE = 50
SHOWN_TARGETS = 3


@login_required
def request_chooser(request: HttpRequest, slug: str) -> HttpResponse:
    """The actions an operator can request for this organization, grouped like the catalog."""
    membership = get_membership(request.user, slug, roles=[Role.OPERATOR])
    settings = ApprovalSettings.for_organization(membership.organization)
    actions = sorted(
        ResponseAction.objects.filter(active=True),
        key=lambda action: (CATEGORY_ORDER[action.category], action.position),
    )
    groups = [
        {
            "category": Category(category),
            "actions": [(action, decide(action, settings, [])) for action in members],
        }
        for category, members in groupby(actions, key=lambda action: action.category)
    ]
    return render(
        request,
        "approvals/request_chooser.html",
        {"membership": membership, "organization": membership.organization, "groups": groups},
    )


@login_required
@require_http_methods(["GET", "POST"])
def new_request(request: HttpRequest, slug: str, key: str) -> HttpResponse:
    membership = get_membership(request.user, slug, roles=[Role.OPERATOR])
    organization = membership.organization
    action = get_object_or_404(ResponseAction, key=key, active=True)
    form = form_for(action.key)(
        request.POST or None, request.FILES or None, organization=organization
    )
    if request.method == "POST" and form.is_valid():
        try:
            created = services.submit_request(
                organization,
                action,
                actor=request.user,
                parameters=form.parameters(),
                targets=form.targets(),
                endpoints=form.endpoints(),
                summary=form.summary(),
                submission_token=form.cleaned_data["submission_token"],
                break_glass=form.cleaned_data["break_glass"],
                justification=form.cleaned_data["justification"],
                context=AuditContext.from_request(request),
            )
        except SubmissionRefused as refusal:
            form.add_error(None, refusal.message)
        else:
            messages.success(request, _submitted_message(created))
            return redirect("request_detail", slug, created.uuid)
    settings = ApprovalSettings.for_organization(organization)
    form.offer_break_glass(not decide(action, settings, [], break_glass=True).refused)
    return render(
        request,
        "approvals/new_request.html",
        {
            "membership": membership,
            "organization": organization,
            "action": action,
            "form": form,
            "expected": decide(action, settings, []),
        },
    )


def _submitted_message(created: ActionRequest) -> str:
    if created.is_break_glass:
        return (
            "Break-glass: the request runs now. Every admin has been told, and an admin will "
            "review it."
        )
    if created.approval_mode == ApprovalMode.MANUAL:
        return (
            f"Request submitted. It waits for a decision by {created.organization.name}'s admins."
        )
    return f"Request submitted and {created.get_approval_mode_display().lower()}."


class RequestFilter(forms.Form):
    status = forms.ChoiceField(
        required=False, choices=[("", "Any status"), *RequestStatus.choices], widget=select()
    )
    action = forms.ChoiceField(required=False, widget=select())
    q = forms.CharField(
        required=False,
        max_length=200,
        label="Search",
        widget=search_input(),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["action"].choices = [
            ("", "Any action"),
            *ResponseAction.objects.filter(active=True).values_list("key", "name"),
        ]

    def apply(self, action_requests):
        if not self.is_valid():
            return self.filter_status(action_requests, "")
        data = self.cleaned_data
        action_requests = self.filter_status(action_requests, data["status"])
        if data["action"]:
            action_requests = action_requests.filter(action__key=data["action"])
        if data["q"]:
            action_requests = action_requests.filter(
                Q(summary__icontains=data["q"]) | Q(targets__value__icontains=data["q"])
            ).distinct()
        return action_requests

    def filter_status(self, action_requests, status: str):
        return action_requests.filter(status=status) if status else action_requests


def _listing(organization):
    # Counted for each row of the page: Count("targets") would join and group every request
    # of the organization (and the paginator's COUNT would repeat it) before the LIMIT.
    target_count = Subquery(
        RequestTarget.objects.filter(request=OuterRef("pk"))
        .order_by()
        .values("request")
        .annotate(n=Count("pk"))
        .values("n"),
        output_field=IntegerField(),
    )
    return (
        ActionRequest.objects.filter(organization=organization)
        .select_related("action", "requester", "decided_by")
        .annotate(target_count=Coalesce(target_count, 0))
        .prefetch_related(
            Prefetch(
                "targets",
                queryset=RequestTarget.objects.order_by("position")[:SHOWN_TARGETS],
                to_attr="first_targets",
            )
        )
    )


def _page(request: HttpRequest, action_requests):
    """One page of a listing; each shown request knows how many targets it does not show, and
    whether the signed-in user may select it for a decision."""
    page = Paginator(action_requests, PAGE_SIZE).get_page(request.GET.get("page"))
    for action_request in page.object_list:
        action_request.more_targets = action_request.target_count - len(
            action_request.first_targets
        )
        action_request.selectable = action_request.can_be_decided_by(request.user)
    return page


@login_required
def request_list(request: HttpRequest, slug: str) -> HttpResponse:
    membership = get_membership(request.user, slug)
    filters = RequestFilter(request.GET or None)
    action_requests = filters.apply(_listing(membership.organization)).order_by(
        "-submitted_at", "-id"
    )
    return render(
        request,
        "approvals/request_list.html",
        {
            "membership": membership,
            "organization": membership.organization,
            "filters": filters,
            "page": _page(request, action_requests),
        },
    )


@login_required
def request_detail(request: HttpRequest, slug: str, uuid: uuid_module.UUID) -> HttpResponse:
    membership, action_request = get_request_for(request.user, slug, uuid)
    is_requester = action_request.requester_id == request.user.pk
    approvals = list(action_request.approvals.select_related("admin"))
    return render(
        request,
        "approvals/request_detail.html",
        {
            "membership": membership,
            "organization": membership.organization,
            "req": action_request,
            "parameters": action_request.parameter_rows(),
            "targets": action_request.targets.all(),
            "events": action_request.events.order_by("timestamp", "id"),
            "can_decide": (
                membership.role == Role.ADMIN and action_request.can_be_decided_by(request.user)
            ),
            "can_cancel": is_requester and action_request.is_pending,
            "approvals": approvals,
            "approved_by_me": any(approval.admin_id == request.user.pk for approval in approvals),
            "is_requester": is_requester,
            "can_review": (
                membership.role == Role.ADMIN and action_request.awaits_review and not is_requester
            ),
            **_undo_context(membership, action_request),
        },
    )


def _undo_context(membership, action_request: ActionRequest) -> dict:
    """The undos of the request (the one under way first named), and, for an operator, the
    targets an Undo would reverse now (none while an undo is under way)."""
    undone_by = list(action_request.undone_by.select_related("action").order_by("submitted_at"))
    under_way = next((u for u in reversed(undone_by) if not u.is_final), None)
    offer = membership.role == Role.OPERATOR and under_way is None
    return {
        "undone_by": undone_by,
        "undo_under_way": under_way,
        "undo_targets": undo.undoable_targets(action_request) if offer else [],
    }


def _back(request: HttpRequest, form: forms.Form, default: str) -> HttpResponse:
    """To the form's `next` page if it is on this site, else to `default`."""
    target = form.cleaned_data.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(target)
    return redirect(default)


def _refuse(request: HttpRequest, form: forms.Form) -> None:
    """Tell why a form was refused; nothing was changed."""
    for problem in problems(form):
        messages.error(request, problem)


DONE = {APPROVE: "Approved", REJECT: "Rejected"}
DECISION_FORMS = {APPROVE: (ApproveForm, "comment"), REJECT: (RejectForm, "reason")}


def _decide(
    request: HttpRequest,
    action_request: ActionRequest,
    decision: str,
    text: str,
    *,
    source: str = Source.WEB,
):
    """The one way the pages (and the e-mail links' confirmation page) decide a request: None
    if the decision took effect, else the refusal in words (decided meanwhile, expired, the
    admin's own request, no reason given)."""
    context = AuditContext.from_request(request, source=source)
    try:
        if decision == APPROVE:
            decided = services.approve_request(
                action_request.pk, actor=request.user, comment=text, context=context
            )
            # The caller's copy learns whether it is approved or waits for more approvals.
            action_request.status = decided.status
        else:
            services.reject_request(
                action_request.pk, actor=request.user, reason=text, context=context
            )
    except TransitionRefused as refusal:
        return refusal.message
    return None


def decided_message(action_request: ActionRequest, decision: str) -> str:
    """What an admin reads after deciding one request: approved, rejected, or their approval
    counted and the request waiting for another admin's (two-person approval)."""
    if decision == APPROVE and action_request.is_pending:
        given = action_request.approvals.count()
        return (
            f"Your approval is recorded: {action_request.action.name} has {given} of the "
            f"{action_request.approvals_needed} approvals it needs and waits for another admin."
        )
    return f"{DONE[decision]}: {action_request.action.name}."


def _waiting_message(waiting: int) -> str:
    """After a bulk approval: the requests that counted the admin's approval and wait for more."""
    return (
        f"Your approval was recorded on {waiting} request{'s' if waiting != 1 else ''} that "
        f"need{'s' if waiting == 1 else ''} another admin's approval too."
    )


def _decide_one(request: HttpRequest, slug: str, uuid: uuid_module.UUID, decision: str):
    """Approve or reject one request from its page."""
    _, action_request = get_request_for(request.user, slug, uuid, roles=[Role.ADMIN])
    form_class, text = DECISION_FORMS[decision]
    form = form_class(request.POST)
    if not form.is_valid():
        _refuse(request, form)
    else:
        refusal = _decide(request, action_request, decision, form.cleaned_data[text])
        if refusal is None:
            messages.success(request, decided_message(action_request, decision))
        else:
            messages.error(request, refusal)
    return _back(request, form, action_request_url(slug, action_request))


@login_required
@require_POST
@step_up_required
def approve(request: HttpRequest, slug: str, uuid: uuid_module.UUID) -> HttpResponse:
    return _decide_one(request, slug, uuid, APPROVE)


@login_required
@require_POST
@step_up_required
def reject(request: HttpRequest, slug: str, uuid: uuid_module.UUID) -> HttpResponse:
    return _decide_one(request, slug, uuid, REJECT)


@login_required
@require_POST
def cancel(request: HttpRequest, slug: str, uuid: uuid_module.UUID) -> HttpResponse:
    _, action_request = get_request_for(request.user, slug, uuid)
    try:
        services.cancel_request(
            action_request.pk, actor=request.user, context=AuditContext.from_request(request)
        )
    except TransitionRefused as refusal:
        messages.error(request, refusal.message)
    else:
        messages.success(request, "Request cancelled.")
    return redirect("request_detail", slug, action_request.uuid)


def action_request_url(slug: str, action_request: ActionRequest) -> str:
    return reverse("request_detail", args=[slug, action_request.uuid])


class QueueFilter(RequestFilter):
    status = forms.ChoiceField(
        required=False,
        choices=[("pending", "Pending approval"), ("decided", "Decided"), ("all", "All")],
        widget=select(),
    )

    def apply(self, action_requests):
        return super().apply(action_requests.filter(approval_mode=ApprovalMode.MANUAL))

    def filter_status(self, action_requests, status: str):
        if status == "decided":
            return action_requests.exclude(status=RequestStatus.PENDING).order_by(
                "-decided_at", "-id"
            )
        if status == "all":
            return action_requests.order_by("-submitted_at", "-id")
        # Oldest first: the request that has waited longest is decided first.
        return action_requests.filter(status=RequestStatus.PENDING).order_by("submitted_at", "id")

    def clean_status(self):
        return self.cleaned_data["status"] or "pending"


# What a row of the queue shows (`queue_rows`) and its selection reads: a request's other
# columns, its parameters above all, are neither fetched nor parsed for 50 rows a page.
QUEUE_COLUMNS = (
    "uuid",
    "action__name",
    "requester__username",
    "decided_by__username",
    "summary",
    "approval_mode",
    "status",
    "submitted_at",
    "expires_at",
    "approvals_needed",
)


@login_required
@require_http_methods(["GET", "POST"])
@step_up_required
def queue(request: HttpRequest, slug: str) -> HttpResponse:
    membership = get_membership(request.user, slug, roles=[Role.ADMIN])
    organization = membership.organization
    if request.method == "POST":
        if request.POST.get("all_matching"):
            return _decide_all_matching(request, membership)
        form = BulkDecisionForm(request.POST)
        _decide_many(request, organization, form)
        return _back(request, form, request.get_full_path())
    filters = QueueFilter(request.GET or None)
    pending_filter = not filters.is_bound or (
        filters.is_valid() and filters.cleaned_data["status"] == "pending"
    )
    action_requests = _with_approvals(filters.apply(_listing(organization)), request.user).only(
        *QUEUE_COLUMNS
    )
    if pending_filter:
        # Two-person approval: what an admin already approved waits for another admin.
        action_requests = action_requests.filter(approved_by_me=False)
    page = _page(request, action_requests)
    for action_request in page.object_list:
        action_request.selectable = action_request.selectable and not action_request.approved_by_me
    return render(
        request,
        "approvals/queue.html",
        {
            "membership": membership,
            "organization": organization,
            "filters": filters,
            "page": page,
            # "Select all N matching" decides what the filter matches beyond this page.
            "all_matching": page.paginator.count
            if pending_filter and page.has_other_pages()
            else 0,
        },
    )


def _with_approvals(action_requests, user):
    """Each request with how many admins approved it, and whether `user` is one of them."""
    given = Subquery(
        Approval.objects.filter(request=OuterRef("pk"))
        .order_by()
        .values("request")
        .annotate(n=Count("pk"))
        .values("n"),
        output_field=IntegerField(),
    )
    return action_requests.annotate(
        approvals_counted=Coalesce(given, 0),
        approved_by_me=Exists(Approval.objects.filter(request=OuterRef("pk"), admin=user)),
    )


def _queue_url(organization, action: str = "", q: str = "") -> str:
    query = urlencode({k: v for k, v in {"action": action, "q": q}.items() if v})
    return reverse("queue", args=[organization.slug]) + (f"?{query}" if query else "")


def _decide_all_matching(request: HttpRequest, membership) -> HttpResponse:
    """Every pending request the queue's filter matches: first a confirmation page with their
    count and mix of actions, then, confirmed, each decided on its own (its own transaction
    and audit event), never one newer than the confirmation page counted."""
    organization = membership.organization
    form = DecideAllMatchingForm(request.POST)
    valid = form.is_valid()
    action, q = (form.cleaned_data.get(name, "") for name in ("action", "q"))
    filters = QueueFilter({"status": "pending", "action": action, "q": q})
    if not (filters.is_valid() and valid):
        for problem in problems(form) + problems(filters):
            messages.error(request, problem)
        return redirect(_queue_url(organization))
    confirming = request.POST.get("confirm") == "yes"
    now = timezone.now()
    matching = (
        filters.apply(ActionRequest.objects.filter(organization=organization))
        .exclude(requester=request.user)
        .exclude(approvals__admin=request.user)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
    )
    if confirming:
        matching = matching.filter(pk__lte=form.cleaned_data["upto"])
    rows = list(
        matching.order_by("submitted_at", "id").values_list("pk", "uuid", "action__name")[
            : MAX_ALL_MATCHING + 1
        ]
    )
    back = _queue_url(organization, action, q)
    if len(rows) > MAX_ALL_MATCHING:
        messages.error(
            request,
            f"More than {MAX_ALL_MATCHING} requests match the filter: expected at most "
            f"{MAX_ALL_MATCHING} at once. Narrow the filter by action or search.",
        )
        return redirect(back)
    decision = form.cleaned_data["decision"]
    if not confirming:
        if not rows:
            messages.error(request, "No pending request you may decide matches the filter now.")
            return redirect(back)
        mix = Counter(name for _, _, name in rows).most_common()
        return render(
            request,
            "approvals/queue_confirm.html",
            {
                "membership": membership,
                "organization": organization,
                "decision": decision,
                "count": len(rows),
                "mix": mix,
                "reason": form.cleaned_data["reason"],
                "action": action,
                "q": q,
                "upto": max(pk for pk, _, _ in rows),
                "back": back,
            },
        )
    reason = form.cleaned_data["reason"] if decision == REJECT else ""
    found = {
        r.pk: r
        for r in ActionRequest.objects.filter(pk__in=[pk for pk, _, _ in rows]).select_related(
            "action"
        )
    }
    done = waiting = 0
    for pk, uuid, name in rows:
        refusal = _decide(request, found[pk], decision, reason)
        if refusal is None and decision == APPROVE and found[pk].is_pending:
            waiting += 1
        elif refusal is None:
            done += 1
        else:
            messages.error(request, f"{name} ({str(uuid)[:8]}): {refusal}")
    gone = (form.cleaned_data["expected"] or 0) - len(rows)
    if gone > 0:
        messages.warning(
            request,
            f"{gone} of the requests you confirmed {'was' if gone == 1 else 'were'} decided, "
            "cancelled or expired meanwhile; not counted.",
        )
    if done:
        messages.success(request, f"{DONE[decision]} {done} request{'s' if done != 1 else ''}.")
    if waiting:
        messages.success(request, _waiting_message(waiting))
    return redirect(back)


def _decide_many(request: HttpRequest, organization, form: BulkDecisionForm) -> None:
    """Approve or reject every selected request; each succeeds or fails on its own."""
    valid = form.is_valid()
    for skipped in form.skipped:
        messages.error(request, skipped)
    if not valid:
        _refuse(request, form)
        return
    decision, reason, chosen = (
        form.cleaned_data[name] for name in ("decision", "reason", "requests")
    )
    found = {
        r.uuid: r
        for r in ActionRequest.objects.filter(organization=organization, uuid__in=chosen)
        .select_related("action")
        .only("pk", "uuid", "action__name")
    }
    done = waiting = 0
    for chosen_uuid in chosen:
        action_request = found.get(chosen_uuid)
        if action_request is None:
            messages.error(request, f"Request {chosen_uuid} was not found in this organization.")
            continue
        # Approving from the queue carries no comment; the reason is for rejecting.
        refusal = _decide(request, action_request, decision, reason if decision == REJECT else "")
        if refusal is None and decision == APPROVE and action_request.is_pending:
            waiting += 1
        elif refusal is None:
            done += 1
        else:
            name = action_request.action.name
            messages.error(request, f"{name} ({str(chosen_uuid)[:8]}): {refusal}")
    if done:
        messages.success(request, f"{DONE[decision]} {done} request{'s' if done != 1 else ''}.")
    if waiting:
        messages.success(request, _waiting_message(waiting))

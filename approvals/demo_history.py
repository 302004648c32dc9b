"""A lived-in month for the demo organizations, written through the same services as the pages.

`write_history()` replays about thirty days of work at `acme` and `globex`: the operator
submits requests of most actions through their forms, the admins decide them after a while
(some rejected with a reason, some left to expire, a few still waiting now), requests run in
the simulated executor (endpoints named `fail-…` fail, so some runs are partially successful),
remote shells end, the admins change their approval settings, people sign in, and the auditor
exports the log. Every step calls the function a page, a link or a periodic job calls, at the
moment it happens: a travelling clock (time-machine) gives every service the time it would have
read then. So the audit chains are written in order and verify like any other.

The month is the same on every run (a seeded random generator); its dates end at the moment it
is written. An organization whose audit log already holds an event is left alone: its past can
no longer be written behind its present. So running it again adds nothing.
"""

import heapq
import itertools
import logging
import random
import uuid
from collections.abc import Callable
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import time_machine
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import override_settings
from django.utils import timezone

from actions.models import ResponseAction
from audit.chain import chain_of, record
from audit.context import AuditContext
from audit.models import AuditEvent, Source
from responseportal.celery import app as celery_app
from responseportal.models import Membership, Organization

from . import digests, reminders, services, state
from .execution import steps
from .forms import form_for
from .models import ActionRequest, ApprovalMode, ApprovalSettings, RequestStatus, Script

DAYS = 30
SEED = "response-portal demo history"
WORKDAY_START, WORKDAY_END = 8, 18  # hours, in the portal's time zone

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
SAFARI = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15"
)
# Where each demo user works from (documentation addresses, RFC 5737).
DESKS = {
    "operator": AuditContext(Source.WEB, "198.51.100.23", FIREFOX),
    "acme-admin": AuditContext(Source.WEB, "203.0.113.40", CHROME),
    "acme-auditor": AuditContext(Source.WEB, "203.0.113.41", CHROME),
    "globex-admin": AuditContext(Source.WEB, "192.0.2.81", SAFARI),
}
# An admin who approves from the pending e-mail confirms in the same browser.
E_MAIL_SHARE = 0.3


@dataclass(frozen=True)
class Plan:
    """What a month at one demo organization looks like."""

    slug: str
    admin: str
    auditor: str | None
    domain: str
    hosts: tuple[str, ...]
    # How many requests a working day brings, at most (a weekend day brings one at most).
    per_day: int
    # Action keys, each with its weight among the submissions.
    actions: dict[str, int]
    # (days before the end, the settings' new values), in order.
    settings_changes: tuple[tuple[float, dict], ...]
    # Submitted in the last hours and still waiting for a decision.
    waiting: tuple[str, ...]


ACME_AUTO = [
    "add_to_block_list",
    "collect_evidence",
    "scan_for_malware",
    "collect_network_analysis_package",
    "run_osquery",
    "run_yara_rules",
    "submit_sandbox",
]
GLOBEX_AUTO = ["scan_for_malware", "submit_sandbox"]

PLANS = (
    Plan(
        slug="acme",
        admin="acme-admin",
        auditor="acme-auditor",
        domain="acme.test",
        hosts=(
            "web-01.acme.test",
            "web-02.acme.test",
            "web-03.acme.test",
            "db-01.acme.test",
            "db-02.acme.test",
            "dc-01.acme.test",
            "ws-finance-04.acme.test",
            "ws-finance-07.acme.test",
            "ws-hr-02.acme.test",
            "laptop-jdoe.acme.test",
            "laptop-mlee.acme.test",
            "build-agent-02.acme.test",
            "fail-kiosk-03.acme.test",
            "fail-vpn-gw-02.acme.test",
            "10.20.4.17",
            "10.20.4.18",
        ),
        per_day=3,
        actions={
            "isolate_endpoint": 9,
            "scan_for_malware": 8,
            "add_to_block_list": 6,
            "collect_evidence": 4,
            "run_osquery": 4,
            "disable_user_account": 4,
            "quarantine_email": 4,
            "terminate_process": 3,
            "collect_file": 3,
            "start_remote_shell": 3,
            "link_workbench_alert": 3,
            "submit_sandbox": 3,
            "run_custom_script": 2,
            "run_yara_rules": 2,
            "add_suspicious_object_exception": 2,
            "add_detection_model_exception": 1,
            "collect_network_analysis_package": 1,
            "deploy_tippingpoint_filter": 1,
        },
        settings_changes=(
            (
                29.8,
                {
                    "auto_approval_enabled": True,
                    "auto_approved_actions": ACME_AUTO,
                    "notify_emails": ["soc@acme.test"],
                },
            ),
            (16.3, {"pending_lifetime_hours": 48}),
            (9.2, {"scope_exceptions": ["dc-01.acme.test", "dc-02.acme.test"]}),
        ),
        waiting=("isolate_endpoint", "disable_user_account", "start_remote_shell"),
    ),
    Plan(
        slug="globex",
        admin="globex-admin",
        auditor=None,
        domain="globex.test",
        hosts=(
            "app-01.globex.test",
            "app-02.globex.test",
            "files-01.globex.test",
            "ws-sales-11.globex.test",
            "ws-sales-12.globex.test",
            "ws-eng-05.globex.test",
            "laptop-hsimpson.globex.test",
            "fail-legacy-nt4.globex.test",
            "172.16.8.21",
        ),
        per_day=2,
        actions={
            "isolate_endpoint": 6,
            "scan_for_malware": 6,
            "add_to_block_list": 4,
            "quarantine_email": 3,
            "disable_user_account": 3,
            "collect_file": 2,
            "terminate_process": 2,
            "submit_sandbox": 2,
            "link_workbench_alert": 2,
            "deploy_tippingpoint_filter": 1,
            "add_suspicious_object_exception": 1,
        },
        settings_changes=(
            (14.1, {"auto_approval_enabled": True, "auto_approved_actions": GLOBEX_AUTO}),
            (6.4, {"remote_shell_validity_hours": 2, "notify_emails": ["secops@globex.test"]}),
        ),
        waiting=("isolate_endpoint", "quarantine_email"),
    ),
)

# What every month shows, whatever the draws: (days before the end, hour, action, how it ends,
# on a healthy and a failing endpoint), for a run that fails on one endpoint, a rejection and
# an expiry.
CERTAIN = (
    (6, 10.5, "scan_for_malware", "approve", True),
    (12, 14.25, "isolate_endpoint", "reject", False),
    (10, 16.5, "isolate_endpoint", "expire", False),
)
# How the requests that wait for a decision end, in every run of twenty (shuffled).
OUTCOMES = {"approve": 14, "reject": 3, "expire": 2, "cancel": 1}
REJECTIONS = (
    "A lab machine: nothing to isolate.",
    "This is our penetration test this week; see change CHG-4471.",
    "The owner confirmed the login; the account stays enabled.",
    "Known vendor software, already allow-listed on our side.",
    "Not during the quarter-end close: call the on-duty admin first.",
    "Duplicate of a request approved this morning.",
)
APPROVAL_COMMENTS = ("", "", "", "Confirmed with the SOC.", "Go ahead.", "OK, owner informed.")
DESCRIPTIONS = (
    "Beaconing to a known C2 domain every 60 s",
    "Ransomware note found on a file share",
    "Credential dumping tool detected by XDR",
    "Phishing campaign: invoice lure with macro",
    "Impossible travel sign-in followed by mailbox rule",
    "Cobalt Strike named pipe seen in memory",
    "Lateral movement over SMB from a workstation",
)
# How long after their last action people come back without signing in again: the portal
# signs out after 30 idle minutes, but a page left open keeps the session alive.
SESSION = timedelta(hours=3)
# A periodic job (expiry, shell end) takes at most this long to notice.
BEAT = timedelta(minutes=1)
YARA_RULE = b'rule demo_beacon { strings: $a = "beacon.php" condition: $a }\n'
SCRIPTS = (
    ("collect-netstat.sh", "bash", "#!/usr/bin/env bash\nset -eu\nss -tunap\n"),
    ("Get-Autoruns.ps1", "powershell", "Get-CimInstance Win32_StartupCommand | Format-List\n"),
)


class HistoryNotWritten(ImproperlyConfigured):
    """The demo cast is missing, or the history cannot be written where it was asked."""


def write_history(now: datetime | None = None) -> dict[str, int]:
    """Write the month of each demo organization that has no audit event yet.

    Returns, per organization slug, how many audit events its history holds (0 for one left
    alone). Runs outside any transaction: each step commits on its own, as it would have.
    """
    if connection.in_atomic_block:
        raise HistoryNotWritten(
            "The demo history commits step by step, each at its own moment: run it outside a "
            "transaction (seed_demo schedules it after its own commits)."
        )
    end = (now or timezone.now()).replace(microsecond=0)
    organizations = {
        plan.slug: Organization.objects.filter(slug=plan.slug).first() for plan in PLANS
    }
    fresh = [
        plan
        for plan in PLANS
        if organizations[plan.slug] is not None
        and not AuditEvent.objects.filter(chain=chain_of(organizations[plan.slug])).exists()
        and not ActionRequest.objects.filter(organization=organizations[plan.slug]).exists()
    ]
    written = {plan.slug: 0 for plan in PLANS}
    if not fresh:
        return written
    history = _History(fresh, organizations, end)
    with _in_process_and_quiet():
        history.plan()
        history.run()
    for plan in fresh:
        written[plan.slug] = AuditEvent.objects.filter(
            chain=chain_of(organizations[plan.slug])
        ).count()
    return written


@contextmanager
def _in_process_and_quiet():
    """Tasks run in this process, at once and without a log line each; the simulated executor
    without its delay; e-mail about the past is not sent again (it went out back then).

    On SQLite (in WAL mode) the history's many small commits skip the wait for the disk: a
    power cut could lose the last of them, never corrupt the database.
    """
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    task_log = logging.getLogger("celery.app.trace")
    level = task_log.level
    task_log.setLevel(logging.WARNING)
    sqlite = connection.vendor == "sqlite"
    if sqlite:
        with connection.cursor() as cursor:
            synchronous = cursor.execute("PRAGMA synchronous").fetchone()[0]
            cursor.execute("PRAGMA synchronous = NORMAL")
    try:
        with override_settings(
            RESPONSE_EXECUTOR="simulated",
            SIMULATED_EXECUTOR_DELAY=0,
            EMAIL_BACKEND="django.core.mail.backends.dummy.EmailBackend",
        ):
            yield
    finally:
        celery_app.conf.task_always_eager = eager
        task_log.setLevel(level)
        if sqlite:
            with connection.cursor() as cursor:
                cursor.execute(f"PRAGMA synchronous = {int(synchronous)}")


@dataclass(order=True)
class _Step:
    moment: datetime
    order: int
    run: Callable[[], None] = field(compare=False)


class _History:
    """The month's steps on one timeline, across the organizations, run in time order."""

    def __init__(self, plans, organizations, end: datetime):
        self.plans = plans
        self.organizations = organizations
        self.end = end
        self.start = end - timedelta(days=DAYS)
        self.zone = ZoneInfo(settings.TIME_ZONE)
        self.rng = random.Random(SEED)  # noqa: S311 - made-up data, the same on every run
        self.steps: list[_Step] = []
        self.counter = itertools.count()
        self.last_seen: dict[int, datetime] = {}
        self.now = self.start
        self.outcomes: dict[str, list[str]] = {}
        User = get_user_model()
        names = {"operator"} | {plan.admin for plan in plans}
        names |= {plan.auditor for plan in plans if plan.auditor}
        self.users = {user.get_username(): user for user in User.objects.filter(username__in=names)}
        missing = names - self.users.keys()
        if missing:
            raise HistoryNotWritten(
                f"The demo users {', '.join(sorted(missing))} do not exist: run seed_demo first."
            )
        self.actions = {action.key: action for action in ResponseAction.objects.all()}
        needed = {key for plan in plans for key in [*plan.actions, *plan.waiting]}
        needed |= {"restore_connection", "dump_process_memory"}
        if needed - self.actions.keys():
            raise HistoryNotWritten(
                f"The actions catalog lacks {', '.join(sorted(needed - self.actions.keys()))}: "
                "run `manage.py sync_catalog` first."
            )
        self.history_orgs = {organizations[plan.slug].pk for plan in plans}

    # The timeline

    def at(self, moment: datetime, run: Callable[[], None]) -> None:
        """Run `run` at `moment` (or now, if that has passed), unless that is still to come."""
        moment = max(moment, self.now)
        if moment < self.end:
            heapq.heappush(self.steps, _Step(moment, next(self.counter), run))

    def run(self) -> None:
        while self.steps:
            step = heapq.heappop(self.steps)
            self.now = step.moment
            with time_machine.travel(step.moment, tick=False):
                step.run()

    def local(self, day: int, hour: float) -> datetime:
        """`hour` o'clock, `day` days after the start, in the portal's time zone."""
        date = (self.start + timedelta(days=day)).astimezone(self.zone).date()
        midnight = datetime(date.year, date.month, date.day, tzinfo=self.zone)
        return midnight + timedelta(hours=hour)

    def minutes(self, low: float, high: float) -> timedelta:
        return timedelta(minutes=self.rng.uniform(low, high))

    def working(self, moment: datetime) -> bool:
        local = moment.astimezone(self.zone)
        return local.weekday() < 5 and WORKDAY_START <= local.hour < WORKDAY_END

    def next_morning(self, moment: datetime) -> datetime:
        local = moment.astimezone(self.zone)
        day = local.date() + timedelta(days=1 if local.hour >= WORKDAY_START else 0)
        while day.weekday() >= 5:
            day += timedelta(days=1)
        morning = datetime(day.year, day.month, day.day, WORKDAY_START, tzinfo=self.zone)
        return morning + self.minutes(2, 50)

    # The plan

    def plan(self) -> None:
        for plan in self.plans:
            organization = self.organizations[plan.slug]
            for days_before, values in plan.settings_changes:
                moment = self.end - timedelta(days=days_before)
                self.act(moment, plan.admin, self.change_settings, organization, plan, values)
            if plan.slug == "acme":
                for n, script in enumerate(SCRIPTS):
                    moment = self.start + timedelta(days=1 + n * 6, hours=2) + self.minutes(0, 40)
                    self.act(moment, "operator", self.upload, organization, script)
            if plan.auditor:
                for day in range(3, DAYS, 7):
                    moment = self.local(day, 15) + self.minutes(0, 90)
                    self.act(moment, plan.auditor, self.export, organization, plan)
            moments = []
            for day in range(DAYS):
                if self.local(day, 12).weekday() >= 5:
                    hours = [self.rng.uniform(9, 22) for _ in range(self.rng.randint(0, 1))]
                else:
                    hours = [
                        self.rng.uniform(7.5, 19) for _ in range(self.rng.randint(1, plan.per_day))
                    ]
                moments += [self.local(day, hour) for hour in hours]
            # Every action of the plan at least once, the rest as the weights have it.
            keys = list(plan.actions)
            keys += self.rng.choices(keys, weights=plan.actions.values(), k=len(moments))
            keys = keys[: len(moments)]
            self.rng.shuffle(keys)
            for moment, key in zip(moments, keys, strict=True):
                self.act(moment, "operator", self.submit, organization, plan, key, None)
            failing = next(host for host in plan.hosts if host.startswith("fail-"))
            for days_before, hour, key, outcome, endpoints in CERTAIN:
                moment = self.local(DAYS - days_before, hour)
                endpoints = [plan.hosts[0], failing] if endpoints else None
                self.act(
                    moment, "operator", self.submit, organization, plan, key, outcome, endpoints
                )
            for n, key in enumerate(plan.waiting):
                moment = self.end - timedelta(hours=5 - 1.5 * n) + self.minutes(0, 20)
                self.act(moment, "operator", self.submit, organization, plan, key, "wait")

    def act(self, moment: datetime, username: str, run, *args) -> None:
        """`username` does `run(*args)` at `moment`, signing in first if their session ended."""
        self.at(moment - self.minutes(0.5, 3), lambda: self.sign_in(username))
        self.at(moment, lambda: run(*args))

    # The steps

    def sign_in(self, username: str) -> None:
        user = self.users[username]
        now = timezone.now()
        last = self.last_seen.get(user.pk)
        self.last_seen[user.pk] = now
        if last is not None and now - last < SESSION:
            return
        memberships = (
            Membership.objects.filter(user=user, organization_id__in=self.history_orgs)
            .select_related("organization")
            .order_by("organization_id")
        )
        mistyped = self.rng.random() < 0.04
        for membership in memberships:
            if mistyped:
                record(
                    membership.organization,
                    "auth.sign_in_failed",
                    actor_username=username,
                    data={"username": username},
                    context=DESKS[username],
                )
            record(
                membership.organization,
                "auth.signed_in",
                actor=user,
                role=membership.role,
                context=DESKS[username],
            )
        user.last_login = now
        user.save(update_fields=["last_login"])

    def seen(self, username: str) -> None:
        self.last_seen[self.users[username].pk] = timezone.now()

    def change_settings(self, organization, plan, values: dict) -> None:
        current = ApprovalSettings.for_organization(organization)
        services.update_approval_settings(
            organization,
            actor=self.users[plan.admin],
            values=values,
            version=current.version,
            context=DESKS[plan.admin],
        )
        self.seen(plan.admin)

    def upload(self, organization, script) -> None:
        name, language, content = script
        services.upload_script(
            organization,
            actor=self.users["operator"],
            name=name,
            language=language,
            content=content,
            context=DESKS["operator"],
        )
        self.seen("operator")

    def export(self, organization, plan) -> None:
        since = (timezone.now() - timedelta(days=7)).astimezone(self.zone)
        filters = self.rng.choice(
            [{}, {"verb": "request.approved"}, {"since": since.strftime("%Y-%m-%dT%H:%M")}]
        )
        record(
            organization,
            "audit.exported",
            actor=self.users[plan.auditor],
            role=Membership.objects.get(
                user=self.users[plan.auditor], organization=organization
            ).role,
            data={"filters": filters},
            context=DESKS[plan.auditor],
        )
        self.seen(plan.auditor)

    def submit(self, organization, plan, key: str, outcome: str | None, endpoints=None) -> None:
        """The operator fills in the form of `key` and submits it; `outcome` says how it
        ends if it waits for a decision (None: the next of OUTCOMES)."""
        if key == "run_custom_script" and not Script.objects.filter(organization=organization):
            key = "scan_for_malware"  # the library is still empty
        if key == "restore_connection":
            # Restored meanwhile by another request, the rest stays isolated.
            endpoints = sorted(state.isolated_endpoints(organization, endpoints))
            if not endpoints:
                return
        data, files = self.form_data(organization, plan, key, endpoints)
        form = form_for(key)(data, files, organization=organization)
        if not form.is_valid():
            # Only reachable if the plan and the forms drift apart: a bug in this module.
            raise HistoryNotWritten(f"The demo {key} form was refused: {form.errors.as_text()}")
        try:
            action_request = services.submit_request(
                organization,
                self.actions[key],
                actor=self.users["operator"],
                parameters=form.parameters(),
                targets=form.targets(),
                endpoints=form.endpoints(),
                summary=form.summary(),
                submission_token=form.cleaned_data["submission_token"],
                context=DESKS["operator"],
            )
        except services.SubmissionRefused:
            return  # the settings of the day refuse it; an operator would pick another action
        self.seen("operator")
        self.digests_after(organization)
        if action_request.approval_mode == ApprovalMode.MANUAL:
            self.follow_up(action_request, plan, outcome or self.next_outcome(plan))
        else:
            self.after_run(action_request, plan)

    def next_outcome(self, plan) -> str:
        deck = self.outcomes.setdefault(plan.slug, [])
        if not deck:
            deck += [outcome for outcome, n in OUTCOMES.items() for _ in range(n)]
            self.rng.shuffle(deck)
        return deck.pop()

    def follow_up(self, action_request: ActionRequest, plan, outcome: str) -> None:
        """Schedule how a request waiting for a decision ends."""
        submitted = action_request.submitted_at
        # The periodic reminders, as beat runs them (a request decided by then gets none).
        settings_then = ApprovalSettings.for_organization(action_request.organization)
        if settings_then.remind_after_minutes:
            first = submitted + timedelta(minutes=settings_then.remind_after_minutes)
            for moment in (first, action_request.close_to_expiry_from):
                self.at(moment + self.minutes(0, 1), reminders.send_due_reminders)
        if outcome == "wait":
            return
        if outcome == "expire":
            self.at(
                action_request.expires_at + self.minutes(0, 1), lambda: self.expire(action_request)
            )
            return
        if outcome == "cancel":
            moment = submitted + self.minutes(2, 25)
            self.act(moment, "operator", self.cancel, action_request)
            return
        if self.working(submitted):
            delay = timedelta(minutes=min(2 + self.rng.lognormvariate(3.0, 0.9), 300))
            moment = submitted + delay
        else:
            moment = self.next_morning(submitted)
        self.act(moment, plan.admin, self.decide, action_request, plan, outcome)

    def expire(self, action_request: ActionRequest) -> None:
        services.expire_request(action_request.pk)

    def cancel(self, action_request: ActionRequest) -> None:
        # Decided or expired meanwhile: the operator is told so, as on the page.
        with suppress(services.TransitionRefused):
            services.cancel_request(
                action_request.pk, actor=self.users["operator"], context=DESKS["operator"]
            )
        self.seen("operator")

    def decide(self, action_request: ActionRequest, plan, outcome: str) -> None:
        admin = self.users[plan.admin]
        desk = DESKS[plan.admin]
        if self.rng.random() < E_MAIL_SHARE:
            desk = AuditContext(Source.EMAIL, desk.ip_address, desk.user_agent)
        self.seen(plan.admin)
        try:
            if outcome == "reject":
                reason = self.rng.choice(REJECTIONS)
                services.reject_request(action_request.pk, actor=admin, reason=reason, context=desk)
                return
            comment = self.rng.choice(APPROVAL_COMMENTS)
            services.approve_request(action_request.pk, actor=admin, comment=comment, context=desk)
        except services.TransitionRefused:
            return  # it expired over a long weekend: the admin is told so, as on the page
        self.digests_after(action_request.organization)
        self.after_run(action_request, plan)

    def digests_after(self, organization) -> None:
        """The digest job, as beat runs it once the organization's digest interval is over."""
        minutes = ApprovalSettings.for_organization(organization).digest_minutes
        if minutes:
            moment = timezone.now() + timedelta(minutes=minutes) + self.minutes(0, 1)
            self.at(moment, digests.send_due_digests)

    def after_run(self, action_request: ActionRequest, plan) -> None:
        """What follows a run: a restore some days after an isolation, the memory dump that
        a remote shell was for, and the end of that shell."""
        action_request.refresh_from_db()
        key = action_request.action.key
        organization = action_request.organization
        if key == "isolate_endpoint" and self.rng.random() < 0.6:
            isolated = list(
                action_request.targets.filter(status="successful").values_list("value", flat=True)
            )
            if isolated:
                moment = action_request.finished_at + timedelta(days=self.rng.uniform(0.5, 4))
                if not self.working(moment):
                    moment = self.next_morning(moment)
                self.act(
                    moment,
                    "operator",
                    self.submit,
                    organization,
                    plan,
                    "restore_connection",
                    "approve",
                    isolated,
                )
        if key == "start_remote_shell" and action_request.status == RequestStatus.SUCCESSFUL:
            host = action_request.targets.get().value
            dump = action_request.finished_at + self.minutes(10, 50)
            self.act(
                dump,
                "operator",
                self.submit,
                organization,
                plan,
                "dump_process_memory",
                "approve",
                [host],
            )
            if self.rng.random() < 0.4:
                moment = dump + self.minutes(20, 60)
                self.act(moment, plan.admin, self.end_shell, action_request, plan)
            else:
                moment = action_request.active_until + self.minutes(0, 1)
                self.at(moment, lambda: steps.expire_remote_shell(action_request.pk))

    def end_shell(self, action_request: ActionRequest, plan) -> None:
        steps.end_remote_shell(
            action_request.pk,
            actor=self.users[plan.admin],
            reason="Memory dump collected; the session is no longer needed.",
            context=DESKS[plan.admin],
        )
        self.seen(plan.admin)

    # What the operator types into each form

    def form_data(self, organization, plan, key: str, endpoints=None):
        rng = self.rng
        healthy = [host for host in plan.hosts if not host.startswith("fail-")]
        if endpoints is None:
            count = rng.choices([1, 2, 3, 5], weights=[10, 5, 2, 1])[0]
            endpoints = rng.sample(plan.hosts, count)
            failing = [host for host in plan.hosts if host.startswith("fail-")]
            if count > 1 and rng.random() < 0.35:
                # One endpoint that does not answer: a partially successful run.
                endpoints = [*[host for host in endpoints if host not in failing][1:], failing[0]]
        one = [rng.choice(healthy)]
        today = timezone.now().astimezone(self.zone).strftime("%Y%m%d")
        number = rng.randint(1000, 9999)
        digest = "".join(rng.choice("0123456789abcdef") for _ in range(40))
        description = rng.choice(DESCRIPTIONS)
        values = {
            "link_workbench_alert": {
                "operation": "link",
                "alert_ids": "\n".join(
                    f"WB-{41000 + n}-{today}-{number + n:05}" for n in range(rng.randint(1, 3))
                ),
                "incident_id": f"IR-{number}",
            },
            "add_suspicious_object_exception": {
                "objects": f"domain:updates.partner-{number}.test",
                "description": "Vendor updater flagged by mistake",
            },
            "add_detection_model_exception": {
                "detection_model": "Suspicious PowerShell Download",
                "scope": f"build-agent-02.{plan.domain}",
                "description": "The build agent downloads modules by design",
            },
            "dump_process_memory": {"endpoints": "\n".join(endpoints), "process": "svchost.exe"},
            "add_to_block_list": {
                "objects": "\n".join(
                    [f"sha1:{digest}", f"domain:login-{plan.slug}-secure-{number}.test"][
                        : rng.randint(1, 2)
                    ]
                ),
                "description": description,
            },
            "collect_evidence": {
                "endpoints": "\n".join(endpoints),
                "evidence_types": rng.sample(["amcache", "event_log", "mft", "autorun"], 2),
            },
            "collect_file": {
                "endpoints": one[0],
                "file_path": f"C:\\Users\\Public\\Downloads\\invoice_{number}.exe",
            },
            "disable_user_account": {
                "account": f"{rng.choice(['jdoe', 'mlee', 'svc-backup', 'akhan'])}@{plan.domain}",
                "description": rng.choice(
                    ["Impossible travel sign-in", "Password found in a paste site"]
                ),
            },
            "isolate_endpoint": {"endpoints": "\n".join(endpoints), "description": description},
            "quarantine_email": {
                "mailbox": f"{rng.choice(['ap', 'hr', 'ceo', 'sales'])}@{plan.domain}",
                "message_id": f"<{number}.{digest[:12]}@mail.invoices-{number}.test>",
            },
            "restore_connection": {"endpoints": "\n".join(endpoints)},
            "scan_for_malware": {"endpoints": "\n".join(endpoints)},
            "terminate_process": {
                "endpoints": one[0],
                "sha1": digest,
                "file_name": f"invoice_{number}.exe",
            },
            "collect_network_analysis_package": {
                "appliance": f"ddi-01.{plan.domain}",
                "detection_id": f"DDI-{number}",
            },
            "deploy_tippingpoint_filter": {
                "cve_ids": f"CVE-2026-{number + 20000}",
                "sms_profile": "Perimeter-Default",
            },
            "run_osquery": {
                "endpoints": "\n".join(endpoints),
                "query": "SELECT pid, name, path FROM processes WHERE on_disk = 0;",
            },
            "run_custom_script": {
                "endpoints": "\n".join(endpoints),
                "script": "",
                "parameters": "--since 24h",
            },
            "run_yara_rules": {"endpoints": "\n".join(endpoints), "target_path": "C:\\Users"},
            "start_remote_shell": {"endpoints": one[0], "reason": f"{description}: live triage"},
            "submit_sandbox": {"urls": f"https://invoice-portal-{number}.test/view?id={number}"},
        }[key]
        if key == "run_custom_script":
            script = Script.objects.filter(organization=organization).order_by("name").first()
            values["script"] = str(script.pk)
        values["submission_token"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        files = {}
        if key == "run_yara_rules":
            files["rule_file"] = SimpleUploadedFile("beacon.yar", YARA_RULE)
        return values, files

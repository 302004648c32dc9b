"""The benchmark's data, seeded into the empty database the benchmark created for itself.

- 1,000,000 audit events (`seed_audit_events`, two processes at once) across 50 organizations:
  `tenant-main` holds 520,000 of them, so that its log has a page 500,000 events back;
  `tenant-export` holds 100,000, the export's; 48 others share the remaining 380,000.
- 10,000 pending requests in `tenant-main`, inserted thousands at a time but row for row what
  `services.submit_request` writes, their `request.submitted` events included (checked
  against twins submitted through the service).
- A request with 100 targets and 50 events, made by the service functions.
- `tenant-small`, the same pages at 10 rows: 10 pending requests and a request with 10
  targets and 10 events, for the query counts.
- `tenant-e2e`, with automatic approval on, for the end-to-end figure.

`--quick` has a tenth of everything (the two history requests keep their size).
"""

import sys
import time
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone

from actions.models import ResponseAction
from approvals import services
from approvals.decision import decide
from approvals.execution import steps as execution
from approvals.models import (
    ActionRequest,
    ApprovalMode,
    ApprovalSettings,
    RequestStatus,
    RequestTarget,
    default_auto_approved_actions,
)
from audit.chain import append, chain_of, json_data
from audit.context import AuditContext
from audit.management.commands.seed_audit_events import ADDRESSES, AGENTS
from audit.models import AuditEvent, Source
from responseportal.http import normalized_ip
from responseportal.models import Membership, Organization, Role

from . import processes

ACTION = "isolate_endpoint"
WEB = AuditContext(source=Source.WEB, ip_address=ADDRESSES[0], user_agent=AGENTS[0])
STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f} s] {message}", flush=True)


@dataclass(frozen=True)
class Plan:
    mode: str
    main_events: int
    export_events: int
    other_organizations: int
    other_events: int
    depth: int
    pending: int
    appends_per_writer: int
    e2e_requests: int
    http_seconds: float
    detail_targets: int = 100
    detail_events: int = 50
    small_rows: int = 10
    samples: int = 50
    warmup: int = 5
    writers: int = 4

    @property
    def seeded_events(self) -> int:
        return self.main_events + self.export_events + self.other_events


FULL = Plan(
    mode="full",
    main_events=520_000,
    export_events=100_000,
    other_organizations=48,
    other_events=380_000,
    depth=500_000,
    pending=10_000,
    appends_per_writer=2_500,
    e2e_requests=2_000,
    http_seconds=30,
)
QUICK = Plan(
    mode="quick",
    main_events=52_000,
    export_events=10_000,
    other_organizations=48,
    other_events=38_000,
    depth=50_000,
    pending=1_000,
    appends_per_writer=250,
    e2e_requests=200,
    http_seconds=5,
)


@dataclass(frozen=True)
class Scene:
    """What the measurements need to know about the seeded data."""

    main: Organization
    small: Organization
    export: Organization
    e2e: Organization
    others: list[Organization]
    operator: object
    admin: object
    auditor: object
    superuser: object
    detail: ActionRequest
    small_detail: ActionRequest
    # The export's `until` filter: the last of tenant-export's seeded events, to the second.
    export_until: str


@dataclass(frozen=True)
class Spec:
    """What an operator typed into the Isolate Endpoint form."""

    endpoints: tuple[str, ...]
    description: str

    @property
    def parameters(self) -> dict:
        return {"endpoints": list(self.endpoints), "description": self.description}

    @property
    def summary(self) -> str:
        return "\n".join(part for part in (self.description, ", ".join(self.endpoints)) if part)

    @property
    def targets(self) -> list[services.Target]:
        return [services.Target("endpoint", endpoint) for endpoint in self.endpoints]


def specs(count: int, prefix: str) -> list[Spec]:
    """`count` requests of one to three endpoints each."""
    return [
        Spec(
            tuple(f"{prefix}-{n:05d}-{k}.corp.example" for k in range(n % 3 + 1)),
            f"Beaconing to a known command-and-control address (case {n})",
        )
        for n in range(count)
    ]


def submit(organization, operator, spec: Spec) -> ActionRequest:
    """A request submitted the way the web form submits it."""
    return services.submit_request(
        organization,
        ResponseAction.objects.get(key=ACTION),
        actor=operator,
        parameters=spec.parameters,
        targets=spec.targets,
        endpoints=list(spec.endpoints),
        summary=spec.summary,
        submission_token=uuid.uuid4(),
        context=WEB,
    )


def bulk_pending_requests(
    organization: Organization, operator, many: Sequence[Spec], *, batch_size: int = 1000
) -> list[ActionRequest]:
    """Pending requests exactly as `services.submit_request` writes them, a batch at a time.

    Each batch is one transaction: the requests, their targets and their `request.submitted`
    events, appended to the chain by `audit.chain.append` as `record` does. What the service
    does besides writing rows (the e-mail to the admins) is left out.
    """
    action = ResponseAction.objects.get(key=ACTION)
    settings = ApprovalSettings.for_organization(organization)
    role = Membership.objects.get(user=operator, organization=organization).role
    made = []
    for start in range(0, len(many), batch_size):
        batch = many[start : start + batch_size]
        with transaction.atomic():
            moment = timezone.now()
            requests = []
            for n, spec in enumerate(batch):
                decision = decide(action, settings, spec.endpoints)
                if decision.mode != ApprovalMode.MANUAL:
                    raise RuntimeError(f"{organization.slug} does not make {ACTION} wait.")
                submitted = moment + timedelta(microseconds=n)
                requests.append(
                    ActionRequest(
                        organization=organization,
                        action=action,
                        requester=operator,
                        parameters=spec.parameters,
                        summary=spec.summary,
                        approval_mode=decision.mode,
                        status=RequestStatus.PENDING,
                        submitted_at=submitted,
                        expires_at=submitted + timedelta(hours=settings.pending_lifetime_hours),
                        submission_token=uuid.uuid4(),
                    )
                )
            ActionRequest.objects.bulk_create(requests)
            RequestTarget.objects.bulk_create(
                RequestTarget(
                    request=request, position=position, kind=target.kind, value=target.value
                )
                for request, spec in zip(requests, batch, strict=True)
                for position, target in enumerate(spec.targets)
            )
            append(
                organization,
                [
                    AuditEvent(
                        organization=organization,
                        timestamp=request.submitted_at,
                        actor=operator,
                        actor_username=operator.get_username(),
                        role=role,
                        verb="request.submitted",
                        request=request,
                        action_key=action.key,
                        data=json_data(
                            {
                                "approval_mode": request.approval_mode,
                                "status": request.status,
                                "parameters": spec.parameters,
                                "targets": list(spec.endpoints),
                                "out_of_scope": [],
                            }
                        ),
                        source=WEB.source,
                        ip_address=normalized_ip(WEB.ip_address),
                        user_agent=WEB.user_agent,
                    )
                    for request, spec in zip(requests, batch, strict=True)
                ],
            )
        made.extend(requests)
    return made


def _comparable(request: ActionRequest) -> dict:
    """What a request's rows say, less what differs between any two requests (ids, times)."""
    request.refresh_from_db()
    unique = {"id", "uuid", "submission_token", "submitted_at", "expires_at"}
    return {
        "request": {
            field.attname: getattr(request, field.attname)
            for field in ActionRequest._meta.concrete_fields
            if field.attname not in unique
        },
        "lifetime": request.expires_at - request.submitted_at,
        "targets": list(
            request.targets.order_by("position").values(
                "position", "kind", "value", "status", "message", "finished_at"
            )
        ),
        "events": list(
            request.events.order_by("sequence").values(
                "organization_id",
                "chain",
                "actor_id",
                "actor_username",
                "role",
                "verb",
                "action_key",
                "data",
                "source",
                "ip_address",
                "user_agent",
            )
        ),
    }


def check_twins(submitted: list[ActionRequest], bulk: list[ActionRequest]) -> None:
    """Fail unless each bulk request's rows are those of its twin submitted by the service."""
    for real, copy in zip(submitted, bulk, strict=True):
        expected, found = _comparable(real), _comparable(copy)
        if expected != found:
            differing = [key for key in expected if expected[key] != found[key]]
            raise RuntimeError(
                "bulk_pending_requests no longer writes what services.submit_request writes: "
                f"{', '.join(differing)} differ.\nservice: {expected}\nbulk:    {found}"
            )


def request_with_history(organization, *, operator, admin, targets: int, events: int, prefix: str):
    """A request with `targets` endpoints and `events` events, all from the service functions.

    Submitted, approved, queued and started; then resumed again and again (as a request
    whose executor kept timing out is), and finished successful on every target.
    """
    spec = Spec(
        tuple(f"{prefix}-{n:03d}.corp.example" for n in range(targets)),
        "Lateral movement from a compromised build server",
    )
    request = submit(organization, operator, spec)
    services.approve_request(request.pk, actor=admin, comment="Go ahead.", context=WEB)
    for _ in range(events - 4):  # started, then resumed
        execution.start_execution(request.pk)
    for target in request.targets.order_by("position"):
        execution.finish_target(
            target.pk, succeeded=True, message=f"Simulated {ACTION} on {target.value}."
        )
    execution.finish_execution(request.pk)
    found = request.events.count()
    if found != events:
        raise RuntimeError(f"The request with history has {found} events, not {events}.")
    return request


def _people(organizations: dict[str, Organization]) -> dict[str, object]:
    User = get_user_model()
    people = {
        name: User.objects.create_user(f"bench-{name}", f"bench-{name}@example.com")
        for name in ("operator", "admin", "auditor")
    }
    people["superuser"] = User.objects.create_superuser("bench-root", "bench-root@example.com")
    roles = {
        "operator": (Role.OPERATOR, ["main", "small", "e2e"]),
        "admin": (Role.ADMIN, ["main", "small", "e2e"]),
        "auditor": (Role.AUDITOR, ["small", "export"]),
    }
    Membership.objects.bulk_create(
        Membership(user=people[name], organization=organizations[key], role=role)
        for name, (role, keys) in roles.items()
        for key in keys
    )
    return people


def _seed_events(plan: Plan) -> None:
    """`seed_audit_events` in two processes at once: one seeds tenant-main, the other the 48
    other organizations, then tenant-export."""
    lanes = [
        [["seed_audit_events", str(plan.main_events), "--org", "tenant-main", "--seed", "1"]],
        [
            [
                *("seed_audit_events", str(plan.other_events)),
                *("--orgs", str(plan.other_organizations), "--seed", "2"),
            ],
            ["seed_audit_events", str(plan.export_events), "--org", "tenant-export", "--seed", "3"],
        ],
    ]
    with ExitStack() as stack:
        running = [processes.start(stack, "seed", processes.manage(*lane.pop(0))) for lane in lanes]
        while any(running):
            for position, child in enumerate(running):
                if child is None or child.running():
                    continue
                if child.process.returncode != 0:
                    raise child.failure("seed_audit_events failed")
                sys.stdout.write("         " + child.output().strip().splitlines()[-1] + "\n")
                lane = lanes[position]
                running[position] = (
                    processes.start(stack, "seed", processes.manage(*lane.pop(0))) if lane else None
                )
            time.sleep(0.2)


def _export_until(export: Organization) -> str:
    """A moment, to the second, after the last seeded event of `export`, before anything else."""
    last = (
        AuditEvent.objects.filter(chain=chain_of(export))
        .order_by("-sequence")
        .values_list("timestamp", flat=True)
        .first()
    )
    until = timezone.localtime(last).replace(microsecond=0) + timedelta(seconds=1)
    if until.second == 0:  # "until 14:30" would mean the whole minute
        until += timedelta(seconds=1)
    if timezone.now() <= until:
        time.sleep((until - timezone.now()).total_seconds() + 0.01)
    return until.strftime("%Y-%m-%dT%H:%M:%S")


def seed(plan: Plan) -> Scene:
    log("Organizations and people")
    # Created first, so that `seed_audit_events --orgs 48` picks exactly these (by slug).
    Organization.objects.bulk_create(
        Organization(slug=f"seed-{n}", name=f"Seed {n}")
        for n in range(1, plan.other_organizations + 1)
    )
    # Without a two-factor requirement: the figures measure the pages, not the sign-in.
    organizations = {
        key: Organization.objects.create(
            slug=f"tenant-{key}", name=f"Tenant {key.title()}", second_factor_policy="none"
        )
        for key in ("main", "export", "small", "e2e")
    }
    people = _people(organizations)

    log(f"{plan.seeded_events:,} audit events across {plan.other_organizations + 2} organizations")
    _seed_events(plan)
    export_until = _export_until(organizations["export"])

    log(f"{plan.pending:,} pending requests in tenant-main")
    small, operator = organizations["small"], people["operator"]
    twins = specs(plan.small_rows // 2, "twin")
    submitted = [submit(small, operator, spec) for spec in twins]
    check_twins(submitted, bulk_pending_requests(small, operator, twins))
    bulk_pending_requests(organizations["main"], operator, specs(plan.pending, "ws"))

    log(f"Requests with {plan.detail_targets} targets and {plan.detail_events} events")
    detail = request_with_history(
        organizations["main"],
        operator=operator,
        admin=people["admin"],
        targets=plan.detail_targets,
        events=plan.detail_events,
        prefix="srv",
    )
    small_detail = request_with_history(
        small,
        operator=operator,
        admin=people["admin"],
        targets=plan.small_rows,
        events=plan.small_rows,
        prefix="srv",
    )
    services.update_approval_settings(
        organizations["e2e"],
        actor=people["admin"],
        values={
            "auto_approval_enabled": True,
            "auto_approved_actions": default_auto_approved_actions(),
        },
        version=0,
        context=WEB,
    )

    log("VACUUM ANALYZE, as autovacuum would have done by now")
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")

    return Scene(
        main=organizations["main"],
        small=small,
        export=organizations["export"],
        e2e=organizations["e2e"],
        others=list(Organization.objects.filter(slug__startswith="seed-").order_by("pk")),
        operator=operator,
        admin=people["admin"],
        auditor=people["auditor"],
        superuser=people["superuser"],
        detail=detail,
        small_detail=small_detail,
        export_until=export_until,
    )


def describe(scene: Scene, plan: Plan) -> dict:
    """The data the figures were measured on."""
    return {
        "audit_events": AuditEvent.objects.count(),
        "seeded_audit_events": plan.seeded_events,
        "organizations_with_seeded_events": plan.other_organizations + 2,
        "main_organization_events": AuditEvent.objects.filter(chain=chain_of(scene.main)).count(),
        "pending_requests_in_main": ActionRequest.objects.filter(
            organization=scene.main, status=RequestStatus.PENDING
        ).count(),
        "detail_request": {
            "targets": scene.detail.targets.count(),
            "events": scene.detail.events.count(),
        },
        "small_organization": {
            "events": AuditEvent.objects.filter(chain=chain_of(scene.small)).count(),
            "pending_requests": ActionRequest.objects.filter(
                organization=scene.small, status=RequestStatus.PENDING
            ).count(),
            "detail_targets": scene.small_detail.targets.count(),
            "detail_events": scene.small_detail.events.count(),
        },
    }

"""The measurements, run in the benchmark's child process against its seeded database.

Pages go through Django's test client: the whole middleware stack with DEBUG off and a
persistent database connection, as under a WSGI server, minus the network. The export, the
concurrent writers, the Celery worker and gunicorn run in processes of their own.
"""

import http.client
import io
import json
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from time import perf_counter, process_time
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.db.models import Count
from django.test import Client
from django.test.utils import CaptureQueriesContext, override_settings
from django.urls import reverse
from django.utils import timezone

from api.tokens import create_token
from approvals.models import FINISHED, ActionRequest, ApprovalMode, RequestStatus
from audit.admin import AuditEventAdmin
from audit.chain import chain_of, record, verify_chain
from audit.models import AuditChainHead
from responseportal.celery import app
from responseportal.models import Organization

from . import anatomy, data, notification_emails, processes, report, static_settings
from .data import Plan, Scene, log

WORKER_CONCURRENCY = 2
GUNICORN_WORKERS = 2
HTTP_CLIENTS = 4


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def fetch(client: Client, url: str) -> int:
    """GET `url` over HTTPS and read the whole body; its size. Anything but a 200 is an error.

    HTTPS as behind the TLS-terminating proxy of a deployment: with DEBUG off, plain HTTP
    is redirected.
    """
    response = client.get(url, secure=True)
    if response.status_code != 200:
        raise RuntimeError(f"GET {url} answered {response.status_code}, not 200.")
    if response.streaming:
        return sum(len(chunk) for chunk in response.streaming_content)
    return len(response.content)


def time_page(client: Client, url: str, plan: Plan) -> dict:
    for _ in range(plan.warmup):
        fetch(client, url)
    samples = []
    for _ in range(plan.samples):
        started = perf_counter()
        fetch(client, url)
        samples.append((perf_counter() - started) * 1000)
    return report.timings(samples, url=url)


def _before(organization: Organization, depth: int) -> int:
    """The `before` cursor of the audit log page that starts `depth` events back."""
    return AuditChainHead.objects.get(chain=chain_of(organization)).last_sequence - depth + 1


def page_urls(scene: Scene, plan: Plan) -> dict[str, str]:
    slug, pk = scene.main.slug, scene.main.pk
    log_url = reverse("audit_log", args=[slug])
    # The admin's change list of the same events: this organization's, newest first; its
    # page at the same depth is an OFFSET of `depth` rows.
    admin_events = reverse("admin:audit_auditevent_changelist")
    admin_events += f"?organization__id__exact={pk}"
    deep_page = plan.depth // AuditEventAdmin.list_per_page + 1
    admin_requests = reverse("admin:approvals_actionrequest_changelist")
    admin_requests += f"?organization__id__exact={pk}&status__exact=pending"
    return {
        "audit_first_page_ms": log_url,
        "audit_deep_page_ms": f"{log_url}?before={_before(scene.main, plan.depth)}",
        "admin_audit_first_page_ms": admin_events,
        "admin_audit_deep_page_ms": f"{admin_events}&p={deep_page}",
        "queue_page_ms": reverse("queue", args=[slug]),
        "admin_queue_page_ms": admin_requests,
        "request_detail_ms": reverse("request_detail", args=[slug, scene.detail.uuid]),
    }


def _queries(client: Client, url: str) -> int:
    fetch(client, url)  # anything cached on first use is cached now
    with CaptureQueriesContext(connection) as queries:
        fetch(client, url)
    return len(queries)


def query_counts(scene: Scene, plan: Plan) -> dict:
    """Each portal page's queries in tenant-small (about 10 rows) and at full scale."""
    client = signed_in(scene.admin)
    small, main = scene.small, scene.main
    small_middle = AuditChainHead.objects.get(chain=chain_of(small)).last_sequence // 2
    pairs = {
        "audit_first_page": (
            reverse("audit_log", args=[small.slug]),
            reverse("audit_log", args=[main.slug]),
        ),
        "audit_deep_page": (
            reverse("audit_log", args=[small.slug]) + f"?before={small_middle}",
            reverse("audit_log", args=[main.slug]) + f"?before={_before(main, plan.depth)}",
        ),
        "queue_page": (reverse("queue", args=[small.slug]), reverse("queue", args=[main.slug])),
        "request_detail": (
            reverse("request_detail", args=[small.slug, scene.small_detail.uuid]),
            reverse("request_detail", args=[main.slug, scene.detail.uuid]),
        ),
    }
    return {
        "queries_per_page": {
            "pages": {
                name: {"at_10": _queries(client, few), "at_scale": _queries(client, many)}
                for name, (few, many) in pairs.items()
            }
        }
    }


def _role(stack: ExitStack, role: str, spec: dict) -> processes.Child:
    """`python -m benchmarks --role ROLE`: a helper process that answers with one line of JSON."""
    argv = processes.benchmark("--role", role, "--spec", json.dumps(spec))
    return processes.start(stack, role, argv, pipes=True)


def _answer(child: processes.Child, timeout: float) -> dict:
    out, _ = child.process.communicate(timeout=timeout)
    if child.process.returncode != 0 or not out.strip():
        raise child.failure("The helper process failed")
    return json.loads(out.strip().splitlines()[-1])


def export(scene: Scene, plan: Plan) -> dict:
    """The CSV export of tenant-export's seeded events, in a process of its own."""
    url = reverse("audit_export", args=[scene.export.slug])
    url += "?" + urlencode({"until": scene.export_until})
    spec = {
        "user": scene.auditor.get_username(),
        "url": url,
        "warmup": reverse("audit_export", args=[scene.small.slug]),
    }
    with ExitStack() as stack:
        found = _answer(_role(stack, "export", spec), timeout=600)
    if found["rows"] != plan.export_events:
        raise RuntimeError(f"The export had {found['rows']:,} rows, not {plan.export_events:,}.")
    return {
        "export_100k_rows_s": {
            "value": round(found["seconds"], 2),
            "rows": found["rows"],
            "rows_per_s": round(found["rows"] / found["seconds"]),
            "url": url,
        },
        "export_peak_rss_mb": {
            "value": round(found["peak_mb"] - found["baseline_mb"], 1),
            "baseline_mb": round(found["baseline_mb"], 1),
            "peak_mb": round(found["peak_mb"], 1),
        },
    }


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}.")


def export_probe(spec: dict) -> dict:
    """In its own process: export once to warm up, reset the peak, export and read the peak."""
    client = signed_in(get_user_model().objects.get(username=spec["user"]))
    fetch(client, spec["warmup"])
    # Writing 5 to clear_refs resets VmHWM (the peak resident size) to the current size.
    Path("/proc/self/clear_refs").write_text("5")
    baseline = _status_kb("VmHWM")
    started = perf_counter()
    response = client.get(spec["url"], secure=True)
    if response.status_code != 200:
        raise RuntimeError(f"GET {spec['url']} answered {response.status_code}, not 200.")
    lines = sum(chunk.count(b"\n") for chunk in response.streaming_content)
    seconds = perf_counter() - started
    return {
        "seconds": seconds,
        "rows": lines - 1,  # the header
        "baseline_mb": baseline / 1024,
        "peak_mb": _status_kb("VmHWM") / 1024,
    }


def appends(scene: Scene, plan: Plan) -> dict:
    """`plan.writers` processes appending through `record`, round the 48 organizations."""
    organizations = [organization.pk for organization in scene.others]
    with ExitStack() as stack:
        writers = [
            _role(
                stack,
                "writer",
                {
                    "organizations": organizations,
                    "offset": number * len(organizations) // plan.writers,
                    "count": plan.appends_per_writer,
                },
            )
            for number in range(plan.writers)
        ]
        for writer in writers:
            if writer.process.stdout.readline().strip() != "ready":
                raise writer.failure("The writer did not start")
        for writer in writers:  # all at once
            writer.process.stdin.write("go\n")
            writer.process.stdin.flush()
        answers = [_answer(writer, timeout=600) for writer in writers]
    seconds = max(a["finished"] for a in answers) - min(a["started"] for a in answers)
    appended = sum(a["appended"] for a in answers)
    breaks = [
        str(found.first_break)
        for organization in scene.others
        for found in [verify_chain(chain_of(organization))]
        if found.first_break is not None
    ]
    return {
        "audit_appends_per_s": {
            "value": round(appended / seconds),
            "events": appended,
            "writers": plan.writers,
            "organizations": len(organizations),
            "seconds": round(seconds, 2),
            "chains_intact": not breaks,
            **({"breaks": breaks[:5]} if breaks else {}),
        }
    }


def append_writer(spec: dict) -> dict:
    """In its own process: wait for "go", then append `count` events round the organizations."""
    organizations = list(Organization.objects.filter(pk__in=spec["organizations"]).order_by("pk"))
    connection.ensure_connection()
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.time()
    for number in range(spec["count"]):
        organization = organizations[(spec["offset"] + number) % len(organizations)]
        record(
            organization,
            "settings.changed",
            data={"pending_lifetime_hours": {"before": 72, "after": 24 + number % 48}},
            context=data.WEB,
        )
    return {"started": started, "finished": time.time(), "appended": spec["count"]}


def verify() -> dict:
    """`verify_audit_log` over every chain (it raises if one is broken)."""
    out = io.StringIO()
    started = perf_counter()
    call_command("verify_audit_log", stdout=out)
    seconds = perf_counter() - started
    checked = int(re.search(r"Checked ([\d,]+) events", out.getvalue())[1].replace(",", ""))
    return {
        "verify_events_per_s": {
            "value": round(checked / seconds),
            "events": checked,
            "seconds": round(seconds, 2),
        }
    }


SUBMITTERS = 4


def _auto_approved(organization: Organization, operator, number: int, prefix: str) -> int:
    spec = data.Spec((f"{prefix}-{number:05d}.corp.example",), "Ransom note found on the host")
    request = data.submit(organization, operator, spec)
    if request.approval_mode != ApprovalMode.AUTO:
        raise RuntimeError(f"{organization.slug} did not approve {data.ACTION} automatically.")
    return request.pk


def _finished(ids: list[int], timeout: float, worker: processes.Child) -> dict[str, int]:
    """Wait until every request has finished; how many ended in each status."""
    deadline = time.monotonic() + timeout
    while True:
        counts = dict(
            ActionRequest.objects.filter(pk__in=ids)
            .values_list("status")
            .annotate(n=Count("id"))
            .order_by()
        )
        done = sum(counts.get(status, 0) for status in FINISHED)
        if done == len(ids):
            return counts
        if not worker.running():
            raise worker.failure("The Celery worker exited")
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"After {timeout:g} s only {done:,} of {len(ids):,} requests had finished "
                f"({counts}).\n{worker.output()[-3000:]}"
            )
        time.sleep(0.25)


def _submit_concurrently(specs: list[dict]) -> tuple[datetime, list[int], dict]:
    """`submitter` processes, one per spec, told to go at once: when they went, the requests
    they submitted, and the span and CPU of their submitting."""
    with ExitStack() as stack:
        submitters = [_role(stack, "submitter", spec) for spec in specs]
        for submitter in submitters:
            if submitter.process.stdout.readline().strip() != "ready":
                raise submitter.failure("The submitter did not start")
        started = timezone.now()
        for submitter in submitters:  # all at once
            submitter.process.stdin.write("go\n")
            submitter.process.stdin.flush()
        answers = [_answer(submitter, timeout=600) for submitter in submitters]
    ids = [pk for answer in answers for pk in answer["ids"]]
    return (
        started,
        ids,
        {
            "seconds": max(a["finished"] for a in answers) - min(a["started"] for a in answers),
            "cpu": sum(a["cpu"] for a in answers),
        },
    )


def _specs(scene: Scene, plan: Plan, prefix: str, **extra) -> list[dict]:
    """What each submitter submits: an equal share of `plan.e2e_requests`, numbered apart."""
    share = -(-plan.e2e_requests // SUBMITTERS)
    return [
        {
            "organization": scene.e2e.pk,
            "operator": scene.operator.pk,
            "prefix": f"{prefix}{number}",
            "count": max(0, min(share, plan.e2e_requests - number * share)),
            **extra,
        }
        for number in range(SUBMITTERS)
    ]


def submitter(spec: dict) -> dict:
    """In its own process: wait for "go", then submit `count` auto-approved requests, one after
    another, through the services (or, with `url`, through the API with the token `secret`)."""
    organization = Organization.objects.get(pk=spec["organization"])
    operator = get_user_model().objects.get(pk=spec["operator"])
    client = Client()
    connection.ensure_connection()
    print("ready", flush=True)
    sys.stdin.readline()
    started, cpu = time.time(), process_time()
    with override_settings(API_RATE_LIMIT="1000000/min"):
        ids = [
            _api_submit(client, spec["url"], spec["secret"], number, spec["prefix"])
            if "url" in spec
            else _auto_approved(organization, operator, number, spec["prefix"])
            for number in range(spec["count"])
        ]
    return {"started": started, "finished": time.time(), "cpu": process_time() - cpu, "ids": ids}


def _chain_intact(organization: Organization) -> dict:
    found = verify_chain(chain_of(organization))
    return {
        "chain_intact": found.first_break is None,
        **({"chain_break": str(found.first_break)} if found.first_break is not None else {}),
    }


def end_to_end(scene: Scene, plan: Plan) -> dict:
    """Auto-approved requests submitted through the service layer by SUBMITTERS processes at
    once (as playbooks submit), run by a Celery worker; the organization's chain verified."""
    app.control.purge()  # what seeding sent (the history requests' executions, e-mails)
    with ExitStack() as stack:
        worker = processes.celery_worker(stack, concurrency=WORKER_CONCURRENCY)
        warm = [
            _auto_approved(scene.e2e, scene.operator, number, "warm")
            for number in range(plan.warmup)
        ]
        _finished(warm, 60, worker)
        worker_cpu = anatomy.group_cpu_seconds(worker.process.pid)
        started, ids, submitting = _submit_concurrently(_specs(scene, plan, "e2e"))
        counts = _finished(ids, 60 + plan.e2e_requests / 10, worker)
        worker_cpu = anatomy.group_cpu_seconds(worker.process.pid) - worker_cpu
    finished = ActionRequest.objects.filter(pk__in=ids).order_by("-finished_at").first()
    seconds = (finished.finished_at - started).total_seconds()
    successful = counts.get(RequestStatus.SUCCESSFUL, 0)
    # Each batch's requests name the task that ran them.
    batches = ActionRequest.objects.filter(pk__in=ids).values("execution_task").distinct().count()
    return {
        "e2e_requests_per_s": {
            "value": round(len(ids) / seconds, 1),
            "requests": len(ids),
            "successful": successful,
            "seconds": round(seconds, 2),
            "submitters": SUBMITTERS,
            "submitting_s": round(submitting["seconds"], 2),
            "worker_concurrency": WORKER_CONCURRENCY,
            "execution_batch_size": settings.EXECUTION_BATCH_SIZE,
            "execution_batches": batches,
            # CPU of the submitters while they submitted, and of the worker's processes (the
            # worker also polls the broker while it waits: an upper bound).
            "web_cpu_ms_per_request": round(submitting["cpu"] * 1000 / len(ids), 2),
            "worker_cpu_ms_per_request": round(worker_cpu * 1000 / len(ids), 2),
            **_chain_intact(scene.e2e),
        }
    }


def _api_submit(client: Client, url: str, secret: str, number: int, prefix: str) -> int:
    """POST one Isolate Endpoint request to the API; its primary key, once auto-approved."""
    spec = data.Spec((f"{prefix}-{number:05d}.corp.example",), "Ransom note found on the host")
    response = client.post(
        url,
        {"action": data.ACTION, "parameters": spec.parameters},
        content_type="application/json",
        secure=True,
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )
    if response.status_code != 201:
        raise RuntimeError(f"POST {url} answered {response.status_code}: {response.content[:500]}")
    body = response.json()
    if body["approval_mode"] != ApprovalMode.AUTO:
        raise RuntimeError(f"{url} did not approve {data.ACTION} automatically: {body}.")
    return ActionRequest.objects.values_list("pk", flat=True).get(uuid=body["uuid"])


def api_end_to_end(scene: Scene, plan: Plan) -> dict:
    """Auto-approved requests submitted through POST /api/v1/…/requests/ with a bearer token
    by SUBMITTERS processes at once (Django's test client in each: the whole middleware and DRF
    stack, minus the network), then run by a Celery worker. The per-token rate limit is lifted
    for the run."""
    _, secret = create_token(scene.operator, scene.e2e, name="benchmark", days=1)
    url = reverse("api_requests", args=[scene.e2e.slug])
    client = Client()
    app.control.purge()
    with ExitStack() as stack, override_settings(API_RATE_LIMIT="1000000/min"):
        worker = processes.celery_worker(stack, concurrency=WORKER_CONCURRENCY)
        warm = [_api_submit(client, url, secret, n, "api-warm") for n in range(plan.warmup)]
        _finished(warm, 60, worker)
        started, ids, submitting = _submit_concurrently(
            _specs(scene, plan, "api", url=url, secret=secret)
        )
        counts = _finished(ids, 60 + plan.e2e_requests / 10, worker)
    finished = ActionRequest.objects.filter(pk__in=ids).order_by("-finished_at").first()
    seconds = (finished.finished_at - started).total_seconds()
    return {
        "api_requests_per_s": {
            "value": round(len(ids) / submitting["seconds"], 1),
            "requests": len(ids),
            "seconds": round(submitting["seconds"], 2),
            "client": f"in-process test client, {SUBMITTERS} processes at once",
        },
        "api_e2e_requests_per_s": {
            "value": round(len(ids) / seconds, 1),
            "requests": len(ids),
            "successful": counts.get(RequestStatus.SUCCESSFUL, 0),
            "seconds": round(seconds, 2),
            "submitters": SUBMITTERS,
            "worker_concurrency": WORKER_CONCURRENCY,
            **_chain_intact(scene.e2e),
        },
    }


def _load(port: int, path: str, cookie: str, seconds: float):
    """HTTP_CLIENTS threads GETting `path` for `seconds`: latencies (ms), errors, duration."""
    latencies: list[float] = []
    errors: list[str] = []
    until = time.monotonic() + seconds
    # As the TLS-terminating proxy in front of gunicorn sends them (BEHIND_TLS_PROXY).
    headers = {"Cookie": cookie, "X-Forwarded-Proto": "https"}

    def hammer():
        while time.monotonic() < until:
            started = perf_counter()
            # gunicorn's sync workers close every connection: one per request, as browsers get.
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    latencies.append((perf_counter() - started) * 1000)
                else:
                    errors.append(f"HTTP {response.status}")
            except (OSError, http.client.HTTPException) as error:
                errors.append(repr(error))
            finally:
                conn.close()

    threads = [threading.Thread(target=hammer, daemon=True) for _ in range(HTTP_CLIENTS)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors, time.monotonic() - began


def http_queue(scene: Scene, plan: Plan) -> dict:
    """The queue page under gunicorn on the loopback interface, for `plan.http_seconds`."""
    client = signed_in(scene.admin)
    name = settings.SESSION_COOKIE_NAME
    cookie = f"{name}={client.cookies[name].value}"
    path = reverse("queue", args=[scene.main.slug])
    port = processes.free_port()
    with ExitStack() as stack:
        processes.gunicorn(stack, port=port, workers=GUNICORN_WORKERS)
        _, errors, _ = _load(port, path, cookie, seconds=2)  # both workers warm
        if errors:
            raise RuntimeError(f"gunicorn did not serve {path}: {errors[:3]}")
        latencies, errors, seconds = _load(port, path, cookie, seconds=plan.http_seconds)
    if not latencies:
        raise RuntimeError(f"No request succeeded: {errors[:3]}")
    return {
        "http_queue_rps": {
            "value": round(len(latencies) / seconds, 1),
            "median_ms": round(report.median(latencies), 2),
            "p95_ms": round(report.p95(latencies), 2),
            "requests": len(latencies),
            "errors": len(errors),
            "seconds": round(seconds, 2),
            "clients": HTTP_CLIENTS,
            "gunicorn_workers": GUNICORN_WORKERS,
        }
    }


def _measure(results: dict, names: list[str], function: Callable[[], dict]) -> None:
    """Add what `function` measures; a failure is reported and recorded, and the run goes on."""
    try:
        found = function()
    except Exception as error:
        traceback.print_exc()
        found = {name: {"error": f"{type(error).__name__}: {error}"[:2000]} for name in names}
    for name, figure in found.items():
        if "median" in figure:
            shown = f"median {figure['median']:,.1f} ms, p95 {figure['p95']:,.1f} ms"
        else:
            shown = ", ".join(f"{key} {value}" for key, value in figure.items() if key != "url")
        log(f"  {name}: {shown}")
    results.update(found)


def run(plan: Plan, results_path: Path) -> None:
    """Seed, measure, and write the figures as JSON to `results_path`."""
    with override_settings(**static_settings(settings.STORAGES)):
        log(f"Benchmark ({plan.mode}): migrating its database")
        call_command("migrate", verbosity=0)
        scene = data.seed(plan)
        results = {"data": data.describe(scene, plan)}

        log(f"Pages: {plan.samples} requests each after {plan.warmup} to warm up")
        portal, admin = signed_in(scene.admin), signed_in(scene.superuser)
        for name, url in page_urls(scene, plan).items():
            client = admin if name.startswith("admin_") else portal
            _measure(results, [name], lambda c=client, u=url, n=name: {n: time_page(c, u, plan)})

        log("Each page beside its own SQL replayed alone")
        pages = {
            name: (admin if name.startswith("admin_") else portal, url)
            for name, url in page_urls(scene, plan).items()
        }
        _measure(results, ["page_sql_ratio"], lambda: anatomy.page_sql_ratios(pages, plan, fetch))
        log("Queries per page at 10 rows and at scale")
        _measure(results, ["queries_per_page"], lambda: query_counts(scene, plan))
        log(f"CSV export of {plan.export_events:,} events in a process of its own")
        _measure(results, ["export_100k_rows_s", "export_peak_rss_mb"], lambda: export(scene, plan))
        log(f"verify_audit_log over {results['data']['audit_events']:,} events")
        _measure(results, ["verify_events_per_s"], verify)
        log(f"Audit appends: {plan.writers} writers, {plan.appends_per_writer:,} events each")
        _measure(results, ["audit_appends_per_s"], lambda: appends(scene, plan))
        log(f"Per request: {anatomy.SAMPLE} auto-approved requests and their tasks, in process")
        _measure(results, anatomy.KEYS, lambda: anatomy.per_request(scene, plan))
        log(f"End to end: {plan.e2e_requests:,} auto-approved requests through a Celery worker")
        _measure(results, ["e2e_requests_per_s"], lambda: end_to_end(scene, plan))
        log(f"API: {plan.e2e_requests:,} auto-approved requests POSTed, run by a Celery worker")
        _measure(
            results,
            ["api_requests_per_s", "api_e2e_requests_per_s"],
            lambda: api_end_to_end(scene, plan),
        )
        log(f"HTTP: the queue page under gunicorn for {plan.http_seconds:g} s")
        _measure(results, ["http_queue_rps"], lambda: http_queue(scene, plan))
        log("Notification e-mails for a burst of auto-approved requests, digests included")
        _measure(
            results,
            ["notification_emails_per_1000_auto_approvals"],
            lambda: notification_emails.measure(scene, plan),
        )
    report.write_json(results_path, results)

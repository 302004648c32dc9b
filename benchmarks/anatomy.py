"""Where an auto-approved request's cost goes, and how a page's time compares with its SQL.

`per_request` submits a sample of auto-approved requests in this process, the way the end-to-end
figure does, and captures every task they publish; it then runs those tasks here with
`Task.apply` (the code a worker runs, without Celery's consumer; the execution task under its
own id, as in a worker, so that it takes the sample's queued requests in batches), and every
task they publish in turn, until none is left. Both sides are tallied: SQL statements, database
transactions, tasks published, CPU time, statements grouped by kind, and, in a second sample, a
cProfile of each.

`page_sql_ratios` captures the statements a page issues, then times the page and, in turn, the
same statements replayed alone on a bare cursor: the ratio is what the page adds to its SQL
(templates, middleware, the ORM building objects).
"""

import cProfile
import os
import pstats
import re
import uuid
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from time import perf_counter, process_time

from celery.signals import before_task_publish
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from psycopg2.extensions import TRANSACTION_STATUS_IDLE

from approvals.models import ActionRequest, ApprovalMode, RequestStatus
from responseportal.celery import app

from . import data, report
from .data import Plan, Scene

SAMPLE = 20
# What `per_request` measures (the first four are in the table, the last two in the JSON).
KEYS = [
    "e2e_sql_per_request",
    "e2e_transactions_per_request",
    "e2e_tasks_per_request",
    "e2e_cpu_ms_per_request",
    "e2e_statements",
    "e2e_profile",
]
PROFILE_TOP = 12

_KIND = re.compile(
    r"^\s*(?P<verb>SELECT|INSERT INTO|UPDATE|DELETE FROM|SAVEPOINT|RELEASE SAVEPOINT|"
    r"ROLLBACK TO SAVEPOINT|\w+)",
    re.IGNORECASE,
)
_TABLE = re.compile(r'(?:FROM|INTO|UPDATE)\s+"?(?P<table>\w+)"?', re.IGNORECASE)
_PARENTHESIZED = re.compile(r"\([^()]*\)")
# A row lock is the statement's last clause (Django puts it there), not words in a string.
_LOCK = re.compile(r"\bFOR (NO KEY )?UPDATE( OF [^)]*?)?( NOWAIT| SKIP LOCKED)?\s*$", re.IGNORECASE)


def kind(sql: str) -> str:
    """A statement's kind: its verb and first table, and whether it locks rows.

    `SELECT … FROM "approvals_actionrequest" … FOR UPDATE` → "SELECT approvals_actionrequest
    FOR UPDATE"; savepoints are "SAVEPOINT" whatever their name.
    """
    found = _KIND.match(sql)
    verb = found["verb"].upper() if found else "?"
    if "SAVEPOINT" in verb:
        return verb
    # The statement's own table, not one a subquery reads: parenthesized parts left out.
    outer, inner = sql, None
    while inner != outer:
        inner, outer = outer, _PARENTHESIZED.sub(" ", outer)
    table = _TABLE.search(outer)
    label = f"{verb} {table['table']}" if table else verb
    if verb == "SELECT" and _LOCK.search(sql):
        label += " FOR UPDATE"
    return label


class Tally:
    """Statements, transactions and their kinds on this thread's connection while installed.

    A transaction is counted when a statement starts one: any statement in autocommit mode,
    or the first one once Django has turned autocommit off for an atomic block (psycopg2 then
    sends BEGIN before it).
    """

    def __init__(self):
        self.statements = 0
        self.transactions = 0
        self.kinds: Counter[str] = Counter()

    def __call__(self, execute, sql, params, many, context):
        raw = context["connection"].connection
        if raw.autocommit or raw.get_transaction_status() == TRANSACTION_STATUS_IDLE:
            self.transactions += 1
        self.statements += 1
        self.kinds[kind(sql)] += 1
        return execute(sql, params, many, context)

    @contextmanager
    def installed(self):
        with connection.execute_wrapper(self):
            yield self


@contextmanager
def published():
    """The tasks published to the broker meanwhile, in order: (name, args, kwargs, task id)."""
    found: list[tuple[str, list, dict, str | None]] = []

    def capture(sender=None, body=None, headers=None, **kwargs):
        args, task_kwargs = (body[0], body[1]) if isinstance(body, list | tuple) else ([], {})
        headers = headers or {}
        found.append(
            (headers.get("task", sender), list(args), dict(task_kwargs), headers.get("id"))
        )

    before_task_publish.connect(capture, weak=False)
    try:
        yield found
    finally:
        before_task_publish.disconnect(capture)


def _submit(scene: Scene, prefix: str) -> int:
    spec = data.Spec((f"{prefix}.corp.example",), "Ransom note found on the host")
    request = data.submit(scene.e2e, scene.operator, spec)
    if request.approval_mode != ApprovalMode.AUTO:
        raise RuntimeError(f"{scene.e2e.slug} did not approve {data.ACTION} automatically.")
    return request.pk


EXECUTE = "approvals.tasks.execute_request"


def _run(name: str, args: list, kwargs: dict, task_id: str | None) -> object:
    """Run one published task here, as the worker would; its failure is an error.

    The execution task runs under its own id and not in-process (`Task.apply` would mark it
    eager, which runs each request alone): as in a worker, it takes the other queued requests
    of the sample into its batch, and their own tasks then find nothing to do.
    """
    task = app.tasks[name]
    if name != EXECUTE:
        result = task.apply(args=args, kwargs=kwargs, task_id=task_id)
        if result.failed():
            raise RuntimeError(f"{name}{tuple(args)} failed here: {result.traceback}")
        return result.result
    task.push_request(id=task_id, args=args, kwargs=kwargs, retries=0, is_eager=False)
    try:
        return task.run(*args, **kwargs)
    finally:
        task.pop_request()


def _sample(scene: Scene, count: int, prefix: str, profiles=None) -> dict:
    """Submit `count` requests, then run every task they lead to; each side's tally."""
    web, worker = Tally(), Tally()
    cpu = {"web": 0.0, "worker": 0.0}
    tasks: Counter[str] = Counter()
    idle = 0  # execution tasks that found their request in another task's batch
    with published() as sent:
        with web.installed():
            started = process_time()
            if profiles:
                profiles["web"].enable()
            ids = [_submit(scene, f"{prefix}-{uuid.uuid4().hex[:10]}") for _ in range(count)]
            if profiles:
                profiles["web"].disable()
            cpu["web"] = process_time() - started
        web_tasks = len(sent)
        done = 0
        with worker.installed():
            started = process_time()
            while done < len(sent):  # the tasks run here publish theirs in turn
                name, args, kwargs, task_id = sent[done]
                done += 1
                if profiles:
                    profiles["worker"].enable()
                outcome = _run(name, args, kwargs, task_id)
                if profiles:
                    profiles["worker"].disable()
                idle += name == EXECUTE and outcome == "nothing to do"
            cpu["worker"] = process_time() - started
        tasks.update(name for name, *_ in sent)
    statuses = Counter(ActionRequest.objects.filter(pk__in=ids).values_list("status", flat=True))
    if statuses[RequestStatus.SUCCESSFUL] != count:
        raise RuntimeError(f"The sample's requests did not all succeed: {dict(statuses)}.")
    return {
        "web": web,
        "worker": worker,
        "cpu": cpu,
        "tasks": tasks,
        "web_tasks": web_tasks,
        "worker_tasks": len(sent) - web_tasks,
        "batches": tasks[EXECUTE] - idle,
    }


def _per(value: float, count: int, digits: int = 1) -> float:
    return round(value / count, digits)


def _top(profile: cProfile.Profile, count: int, *, project: bool = False) -> list[dict]:
    """The functions that took the most time of their own, per request; with `project`, the
    project's own functions that took the most time with what they call."""
    stats = pstats.Stats(profile)
    root = str(Path(__file__).resolve().parents[1]) + os.sep
    rows = []
    for (path, line, function), (_, calls, own, cumulative, _) in stats.stats.items():
        if project and (not path.startswith(root) or "site-packages" in path):
            continue
        rows.append((own, cumulative, calls, f"{_short(path)}:{line}({function})"))
    rows.sort(key=lambda row: row[1] if project else row[0], reverse=True)
    return [
        {
            "function": where,
            "own_ms": round(own * 1000 / count, 3),
            "cumulative_ms": round(cumulative * 1000 / count, 3),
            "calls": _per(calls, count),
        }
        for own, cumulative, calls, where in rows[:PROFILE_TOP]
    ]


def _short(path: str) -> str:
    """A profiled file's path from the project or from site-packages, not from the disk root."""
    for marker in ("site-packages" + os.sep, str(Path(__file__).resolve().parents[1]) + os.sep):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def per_request(scene: Scene, plan: Plan) -> dict:
    """Statements, transactions, tasks and CPU per auto-approved request, each side apart."""
    # Anything cached on first use is cached now; the warm request runs to its end too, so no
    # queued request of it is left for the sample's first batch to take.
    _sample(scene, 1, "anatomy-warm")
    app.control.purge()
    count = SAMPLE
    found = _sample(scene, count, "anatomy")
    web, worker, cpu = found["web"], found["worker"], found["cpu"]
    profiles = {"web": cProfile.Profile(), "worker": cProfile.Profile()}
    _sample(scene, count, "anatomy-profiled", profiles)
    app.control.purge()

    def statements(tally: Tally) -> dict:
        return {name: _per(n, count, 2) for name, n in tally.kinds.most_common()}

    return {
        "e2e_sql_per_request": {
            "value": _per(web.statements + worker.statements, count),
            "web": _per(web.statements, count),
            "worker": _per(worker.statements, count),
            "requests": count,
            # The worker ran the sample's requests in this many batches (EXECUTION_BATCH_SIZE).
            "execution_batches": found["batches"],
        },
        "e2e_transactions_per_request": {
            "value": _per(web.transactions + worker.transactions, count),
            "web": _per(web.transactions, count),
            "worker": _per(worker.transactions, count),
            "requests": count,
        },
        "e2e_tasks_per_request": {
            "value": _per(sum(found["tasks"].values()), count, 2),
            "from_web": _per(found["web_tasks"], count, 2),
            "from_worker": _per(found["worker_tasks"], count, 2),
            "by_task": {name: _per(n, count, 2) for name, n in found["tasks"].most_common()},
            "requests": count,
        },
        "e2e_cpu_ms_per_request": {
            "value": round((cpu["web"] + cpu["worker"]) * 1000 / count, 2),
            "web": round(cpu["web"] * 1000 / count, 2),
            "worker": round(cpu["worker"] * 1000 / count, 2),
            "requests": count,
            "measured": (
                "in this process; the worker side's tasks run here (Task.apply; the execution "
                "task as in a worker, taking the sample's queued requests in batches)"
            ),
        },
        "e2e_statements": {
            "web": statements(web),
            "worker": statements(worker),
            "requests": count,
        },
        "e2e_profile": {
            "requests": count,
            "by_own_time": {side: _top(profile, count) for side, profile in profiles.items()},
            "project_by_cumulative_time": {
                side: _top(profile, count, project=True) for side, profile in profiles.items()
            },
        },
    }


def _replay(statements: list[str]) -> float:
    """The statements alone, on psycopg2's own cursor, every row fetched; seconds.

    In a transaction rolled back at the end, so that a page's writes (a session saved,
    say) are not applied twice.
    """
    with transaction.atomic():
        raw = connection.connection.cursor()
        started = perf_counter()
        for sql in statements:
            raw.execute(sql)
            if raw.description is not None:
                raw.fetchall()
        seconds = perf_counter() - started
        raw.close()
        transaction.set_rollback(True)
    return seconds


def page_sql_ratio(client, url: str, plan: Plan, fetch) -> dict:
    """The page's median time over the median time of its own statements replayed alone,
    each page request followed by a replay, so that both see the same load."""
    fetch(client, url)
    with CaptureQueriesContext(connection) as captured:
        fetch(client, url)
    statements = [query["sql"] for query in captured.captured_queries]
    pages, sql = [], []
    for _ in range(max(plan.samples // 2, 5)):
        started = perf_counter()
        fetch(client, url)
        pages.append((perf_counter() - started) * 1000)
        sql.append(_replay(statements) * 1000)
    page_ms, sql_ms = report.median(pages), report.median(sql)
    return {
        "value": round(page_ms / sql_ms, 2) if sql_ms else None,
        "page_ms": round(page_ms, 2),
        "sql_ms": round(sql_ms, 2),
        "statements": len(statements),
        "samples": len(pages),
        "url": url,
        "profiled": breakdown(client, url, fetch),
    }


# Where a profiled page's time goes: (file, function) whose cumulative time is each share.
_SHARES = {
    "sql": [("~", "<method 'execute' of 'psycopg2.extensions.cursor' objects>")]
    + [
        ("~", f"<method '{name}' of 'psycopg2.extensions.cursor' objects>")
        for name in (
            "fetchone",
            "fetchmany",
            "fetchall",
        )
    ],
    "templates": [("django/template/backends/django.py", "render")],
    "view": [("django/core/handlers/base.py", "_get_response")],
}
PROFILED = 5


def breakdown(client, url: str, fetch) -> dict:
    """A page under cProfile (slower than unprofiled, so shares, not times, are the point):
    the share of its time in SQL (the driver's calls), in rendering templates (with any SQL
    they run), in the view (middleware's own work is the rest of the request)."""
    profile = cProfile.Profile()
    started = perf_counter()
    profile.enable()
    for _ in range(PROFILED):
        fetch(client, url)
    profile.disable()
    total = perf_counter() - started
    shares = dict.fromkeys(_SHARES, 0.0)
    for (path, _, function), (_, _, _, cumulative, _) in pstats.Stats(profile).stats.items():
        for share, places in _SHARES.items():
            if any(path.endswith(file) and function == name for file, name in places):
                shares[share] += cumulative
    found = {f"{share}_share": round(seconds / total, 3) for share, seconds in shares.items()}
    found["middleware_and_client_share"] = round(1 - shares["view"] / total, 3)
    return found


def page_sql_ratios(pages: dict[str, tuple], plan: Plan, fetch) -> dict:
    """`page_sql_ratio` of each page: name → (client, url)."""
    return {
        "page_sql_ratio": {
            "pages": {
                name.removesuffix("_ms"): page_sql_ratio(client, url, plan, fetch)
                for name, (client, url) in pages.items()
            }
        }
    }


def group_cpu_seconds(group: int) -> float:
    """User and system CPU time of the processes of process group `group` (a Celery worker
    and its pool), from /proc; processes that have exited are not counted."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        # After the name: state, ppid, pgrp, ..., utime (14th field) and stime (15th).
        if int(fields[2]) == group:
            total += int(fields[11]) + int(fields[12])
    return total / ticks

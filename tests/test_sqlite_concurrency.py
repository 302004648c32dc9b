"""On embedded SQLite (`make run`), simultaneous changes answer like PostgreSQL: one wins, the
others are told who won, and nothing answers 500 "database is locked".

How it is tested: a real server in a subprocess (`manage.py runserver --noreload`, threaded,
as `make run` starts it) on a fresh SQLite file, configured only by environment variables, so
`responseportal/settings.py` is what is under test; HTTP requests from threads that start
together at a barrier. pytest-django's `live_server` cannot show the problem or its fix:

- the SQLite test database is in memory, and an in-memory database lives in one connection,
  so the live server's threads share the test's connection and take turns: nothing ever
  waits for a lock. (A shared-cache in-memory database, the other way to share one, locks
  per table and fails with SQLITE_LOCKED at once, never calling the busy timeout.)
- a file-based test database needs transactional tests, whose flush DELETEs the audit log,
  which its append-only trigger refuses on SQLite.

Users are signed in with sessions created in the database beforehand, and send a CSRF cookie
with the matching header, as a browser's form would.
"""

import html
import http.client
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest

from approvals.models import ActionRequest, ApprovalSettings, RequestTarget
from audit.models import AuditEvent

PROJECT = Path(__file__).resolve().parents[1]
ADMINS = 20
CSRF_SECRET = "a" * 32  # a CSRF cookie's secret; the same 32 characters pass as the token

SEED = """
import json
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore
from actions.models import ResponseAction
from approvals import services
from responseportal.models import Membership, Organization, Role

# Without a two-factor requirement, like the demo's acme (tests/test_step_up.py covers it).
acme = Organization.objects.create(
    slug="acme", name="Acme Corporation", second_factor_policy="none"
)
initech = Organization.objects.create(slug="initech", name="Initech", second_factor_policy="none")

def member(username, role, *organizations):
    user = get_user_model().objects.create_user(username, f"{username}@example.com")
    for organization in organizations:
        Membership.objects.create(user=user, organization=organization, role=role)
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return user, session.session_key

operator, operator_session = member("operator", Role.OPERATOR, acme)
admins = [member(f"admin-{n:02}", Role.ADMIN, acme, initech) for n in range(%(admins)d)]
isolate = ResponseAction.objects.get(key="isolate_endpoint")

def pending(host):
    return str(services.submit_request(
        acme, isolate, actor=operator,
        parameters={"endpoints": [host], "description": "Beaconing"},
        targets=[services.Target("endpoint", host)], endpoints=[host],
    ).uuid)

print(json.dumps({
    "operator": operator_session,
    "admins": [session for _, session in admins],
    "one": pending("one.acme.test"),
    "raced": [pending(f"raced-{n}.acme.test") for n in range(5)],
    "bulk": [pending(f"bulk-{n}.acme.test") for n in range(10)],
}))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Answer:
    status: int
    messages: list[str]
    body: str
    location: str = ""


@dataclass
class Portal:
    port: int
    database: Path
    seed: dict
    log: Path

    def browser(self, session: str) -> "Browser":
        return Browser(self, session)

    def query(self, sql: str, *parameters) -> list[tuple]:
        with sqlite3.connect(f"file:{self.database}?mode=ro", uri=True) as db:
            return db.execute(sql, parameters).fetchall()

    def events(self, request_uuid: str, *verbs: str) -> int:
        """How many audit events of these verbs the request has."""
        return self.query(
            "SELECT count(*) FROM approvals_auditevent AS e "
            "JOIN approvals_actionrequest AS r ON e.request_id = r.id "
            "WHERE r.uuid = ? AND e.verb IN (SELECT value FROM json_each(?))",
            uuid.UUID(request_uuid).hex,
            json.dumps(verbs),
        )[0][0]


@dataclass
class Browser:
    portal: Portal
    session: str
    cookies: dict = field(default_factory=dict)

    def _send(self, method: str, path: str, data: dict | None = None):
        connection = http.client.HTTPConnection("127.0.0.1", self.portal.port, timeout=60)
        cookies = {"sessionid": self.session, "csrftoken": CSRF_SECRET, **self.cookies}
        headers = {
            "Cookie": "; ".join(f"{name}={value}" for name, value in cookies.items()),
            "Connection": "close",
        }
        body = None
        if data is not None:
            body = urlencode(data, doseq=True)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            headers["X-CSRFToken"] = CSRF_SECRET
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            for header in response.headers.get_all("Set-Cookie") or []:
                for name, morsel in SimpleCookie(header).items():
                    self.cookies[name] = morsel.value
            return response.status, response.getheader("Location", ""), response.read().decode()
        finally:
            connection.close()

    def post(self, path: str, data: dict | None = None) -> Answer:
        """POST as a browser's form, and read the messages of the page it lands on."""
        status, location, body = self._send("POST", path, data or {})
        if status != 302:
            return Answer(status, _alerts(body), body)
        _, _, page = self._send("GET", urlsplit(location).path)
        return Answer(status, _alerts(page), page, location)


def _alerts(page: str) -> list[str]:
    shown = re.findall(r'<div class="alert [^"]*" role="status">(.*?)</div>', page, re.S)
    return [html.unescape(text).strip() for text in shown]


def _error_of(answer: Answer) -> str:
    """What a 500 page (DEBUG is on, as under `make run`) says went wrong."""
    found = re.search(r'<pre class="exception_value">(.*?)</pre>', answer.body, re.S) or re.search(
        r"<title>(.*?)</title>", answer.body, re.S
    )
    text = found.group(1) if found else answer.body[:200] or "; ".join(answer.messages)
    return " ".join(html.unescape(text).split())


def at_once(calls) -> list[Answer]:
    """Run every call in its own thread, all released together; answers in the calls' order."""
    start = threading.Barrier(len(calls))
    answers: list = [None] * len(calls)

    def run(n, call):
        start.wait()
        try:
            answers[n] = call()
        except Exception as error:  # a refused or reset connection is an answer too
            answers[n] = Answer(0, [repr(error)], "")

    threads = [threading.Thread(target=run, args=(n, call)) for n, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return answers


def no_server_errors(answers: list[Answer]) -> None:
    errors = [f"{a.status}: {_error_of(a)}" for a in answers if a.status not in (200, 302)]
    assert not errors, f"{len(errors)} of {len(answers)} answers failed: {errors}"


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sqlite-portal")
    database = folder / "db.sqlite3"
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env |= {
        "DEBUG": "true",
        "DATABASE_URL": f"sqlite:///{database}",
        "SECRET_KEY": "insecure-key-for-the-sqlite-concurrency-test",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "SECURE_COOKIES": "false",
        "SIMULATED_EXECUTOR_DELAY": "0",
        "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
        "LOG_LEVEL": "ERROR",
    }
    manage = [sys.executable, str(PROJECT / "manage.py")]

    def run(*arguments: str) -> str:
        done = subprocess.run(
            [*manage, *arguments], env=env, cwd=PROJECT, capture_output=True, text=True, timeout=180
        )
        assert done.returncode == 0, f"manage.py {arguments[0]} failed:\n{done.stderr[-3000:]}"
        return done.stdout

    run("migrate", "--verbosity=0")
    seed = json.loads(run("shell", "-c", SEED % {"admins": ADMINS}).strip().splitlines()[-1])
    port = _free_port()
    log = folder / "runserver.log"
    with open(log, "w") as output:
        server = subprocess.Popen(
            [*manage, "runserver", f"127.0.0.1:{port}", "--noreload"],
            env=env,
            cwd=PROJECT,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        started = Portal(port, database, seed, log)
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, f"runserver exited:\n{log.read_text()[-3000:]}"
            try:
                if started.browser("")._send("GET", "/accounts/login/")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"runserver did not answer:\n{log.read_text()}"
            time.sleep(0.2)
        yield started
    finally:
        server.terminate()
        server.wait(timeout=30)


def request_path(uuid_: str, what: str = "") -> str:
    return f"/orgs/acme/requests/{uuid_}/{what + '/' if what else ''}"


def test_the_tables_queried_here_are_the_models_tables():
    models = (ActionRequest, ApprovalSettings, AuditEvent, RequestTarget)
    assert [model._meta.db_table for model in models] == [
        "approvals_actionrequest",
        "approvals_approvalsettings",
        "approvals_auditevent",
        "approvals_requesttarget",
    ]


def test_the_server_runs_sqlite_in_wal_mode(portal):
    # Readers (pages, a streaming CSV export) never hold up a writer's commit.
    assert portal.query("PRAGMA journal_mode") == [("wal",)]


def test_twenty_simultaneous_approvals_make_one_decision(portal):
    admins = [portal.browser(session) for session in portal.seed["admins"]]
    one = portal.seed["one"]

    answers = at_once(
        [lambda b=b: b.post(request_path(one, "approve"), {"comment": "Go"}) for b in admins]
    )

    no_server_errors(answers)
    assert [a.status for a in answers] == [302] * ADMINS
    won = [n for n, a in enumerate(answers) if "Approved: Isolate Endpoint." in a.messages]
    assert len(won) == 1, [a.messages for a in answers]
    winner = f"admin-{won[0]:02}"
    refused = [a.messages for n, a in enumerate(answers) if n != won[0]]
    expected = re.compile(rf"This request was already approved by {winner} at .+\.")
    assert all(any(expected.fullmatch(m) for m in shown) for shown in refused), refused
    assert portal.events(one, "request.approved") == 1
    assert portal.events(one, "request.rejected") == 0


def test_approve_against_cancel_one_wins_and_the_other_is_told(portal):
    admins = [portal.browser(session) for session in portal.seed["admins"][:4]]
    operator = portal.browser(portal.seed["operator"])
    for raced in portal.seed["raced"]:
        answers = at_once(
            [
                lambda r=raced: operator.post(request_path(r, "cancel")),
                *[lambda b=b, r=raced: b.post(request_path(r, "approve")) for b in admins],
            ]
        )
        no_server_errors(answers)
        cancel, approvals = answers[0], answers[1:]
        cancelled = "Request cancelled." in cancel.messages
        approved = [a for a in approvals if "Approved: Isolate Endpoint." in a.messages]
        assert cancelled + len(approved) == 1, [a.messages for a in answers]
        if cancelled:
            losers, told = approvals, "This request was cancelled by operator at "
        else:
            losers = [cancel, *(a for a in approvals if a is not approved[0])]
            told = "This request was already approved by admin-"
        assert all(any(m.startswith(told) for m in a.messages) for a in losers), [
            a.messages for a in losers
        ]
        assert portal.events(raced, "request.approved", "request.cancelled") == 1


def test_bulk_decisions_at_once_decide_each_request_once(portal):
    bulk = portal.seed["bulk"]
    deciders = [portal.browser(session) for session in portal.seed["admins"][:6]]

    def decide(browser, n):
        data = {"decision": "approve" if n % 2 else "reject", "requests": bulk}
        if n % 2 == 0:
            data["reason"] = f"Not now ({n})"
        return browser.post("/orgs/acme/queue/", data)

    answers = at_once([lambda b=b, n=n: decide(b, n) for n, b in enumerate(deciders)])

    no_server_errors(answers)
    done = 0
    for answer in answers:
        for message in answer.messages:
            counted = re.fullmatch(r"(?:Approved|Rejected) (\d+) requests?\.", message)
            done += int(counted.group(1)) if counted else 0
    assert done == len(bulk)
    refusals = [m for a in answers for m in a.messages if "): This request was already" in m]
    assert len(refusals) == len(bulk) * (len(deciders) - 1)
    assert [portal.events(one, "request.approved", "request.rejected") for one in bulk] == [
        1
    ] * len(bulk)


def _settings_form(version: int, hours: int) -> dict:
    return {
        "auto_approval_enabled": "on",
        "auto_approved_actions": ["isolate_endpoint", "scan_for_malware"],
        "scope_mode": "all",
        "pending_lifetime_hours": hours,
        "remote_shell_validity_hours": 4,
        "notify_emails": "",
        "notify_webhook_url": "",
        "version": version,
    }


@pytest.mark.parametrize("version", [0, 1], ids=["first save", "a later save"])
def test_settings_saved_at_once_keep_one_and_tell_the_others(portal, version):
    admins = [portal.browser(session) for session in portal.seed["admins"][:10]]
    saved_settings = "SELECT version, pending_lifetime_hours FROM approvals_approvalsettings"
    assert [row[0] for row in portal.query(saved_settings)] == ([version] if version else [])

    answers = at_once(
        [
            lambda b=b, n=n: b.post(
                "/orgs/initech/settings/approval/", _settings_form(version, 10 * version + n + 1)
            )
            for n, b in enumerate(admins)
        ]
    )

    no_server_errors(answers)
    saved = [n for n, a in enumerate(answers) if a.status == 302]
    assert len(saved) == 1, [a.messages for a in answers]
    assert "Approval settings saved." in answers[saved[0]].messages
    stale = [a for a in answers if a.status == 200]
    assert len(stale) == 9
    assert all("Someone changed these settings after you opened the page" in a.body for a in stale)
    assert portal.query(saved_settings) == [(version + 1, 10 * version + saved[0] + 1)]
    changed = "SELECT count(*) FROM approvals_auditevent WHERE verb = 'settings.changed'"
    assert portal.query(changed) == [(version + 1,)]


def test_a_double_submit_at_once_creates_one_request(portal):
    operator = portal.browser(portal.seed["operator"])
    token = uuid.uuid4()
    form = {
        "endpoints": "double.acme.test",
        "description": "Clicked ten times",
        "submission_token": str(token),
    }

    answers = at_once(
        [lambda: operator.post("/orgs/acme/requests/new/isolate_endpoint/", form)] * 10
    )

    no_server_errors(answers)
    assert {a.status for a in answers} == {302}
    assert len({a.location for a in answers}) == 1
    created = (
        "SELECT r.uuid FROM approvals_actionrequest AS r "
        "JOIN approvals_requesttarget AS t ON t.request_id = r.id WHERE t.value = ?"
    )
    [(created_uuid,)] = portal.query(created, "double.acme.test")
    assert answers[0].location.endswith(f"/requests/{uuid.UUID(created_uuid)}/")
    assert portal.events(created_uuid, "request.submitted") == 1

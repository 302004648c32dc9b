"""A real `celery worker` process against Redis and PostgreSQL: approved work runs, a killed
worker loses nothing (its request resumes once its heartbeat stops), and a broker outage
strands nothing: neither the requests nor their e-mails and webhook calls.

Needs PostgreSQL (the worker is another process: it must see the test's committed rows) and
Redis (`TEST_REDIS_URL`, a database other than 0). Without them the tests skip on a laptop and
fail in CI (`CI=true`). Each run sends its tasks to a queue of its own, which it deletes at the
end, so two runs sharing one Redis database never take each other's messages.
"""

import contextlib
import email
import json
import os
import signal
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from email.policy import default
from pathlib import Path
from urllib.parse import quote, urlsplit

import kombu.pools
import pytest
import redis
from django.db import connection
from django.utils import timezone

from actions.models import ResponseAction
from actions.sync import sync_catalog
from approvals import services
from approvals.execution import steps as execution
from approvals.execution import tasks
from approvals.models import (
    ApprovalSettings,
    ExecutorCall,
    Notification,
    RequestStatus,
    TargetStatus,
)
from audit.chain import chain_of, verify_chain
from responseportal.celery import app

from .approvals_helpers import submit
from .conftest import IN_CI
from .test_notification_webhook import Receiver, use_webhook
from .test_notification_webhook import receiver as receiver  # a fixture

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("TEST_REDIS_URL", "")
ON_POSTGRESQL = connection.vendor == "postgresql"
# A port nothing listens on: connecting to it is refused at once.
UNREACHABLE_REDIS = "redis://127.0.0.1:1/15"
# How long the worker may hold a message without acknowledging it before Redis hands it to
# another worker (CELERY_VISIBILITY_TIMEOUT); short here, so a killed worker's is soon back.
VISIBILITY_TIMEOUT = 2
QUEUE = f"response-portal-tests-{os.getpid()}-{uuid.uuid4().hex[:8]}"

pytestmark = [
    pytest.mark.postgresql,
    # Transactional tests flush the tables after each test, which SQLite's append-only audit
    # trigger refuses: on SQLite they do not run at all (in CI the fixture below fails instead).
    pytest.mark.skipif(
        not ON_POSTGRESQL and not IN_CI,
        reason="needs PostgreSQL and Redis: set DATABASE_URL and TEST_REDIS_URL to run it",
    ),
    pytest.mark.django_db(transaction=True),
]


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true but {message}")
    pytest.skip(message)


@pytest.fixture
def requires_redis():
    """Redis at TEST_REDIS_URL; skip on a laptop, fail in CI. This run's queue goes at the end."""
    if not REDIS_URL:
        _unavailable("TEST_REDIS_URL is not set: set it to e.g. redis://127.0.0.1:6379/15")
    if urlsplit(REDIS_URL).path.strip("/") in {"", "0"}:
        pytest.fail(
            f"TEST_REDIS_URL={REDIS_URL} names Redis database 0, where applications keep "
            "their data: give the tests a database of their own, e.g. redis://127.0.0.1:6379/15"
        )
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.ping()
    except redis.exceptions.RedisError as error:
        _unavailable(f"Redis at {REDIS_URL} does not answer ({error})")
    yield REDIS_URL
    for key in client.scan_iter(match=f"*{QUEUE}*"):
        client.delete(key)
    # A killed worker's unacknowledged messages wait in kombu's shared hash; drop this run's.
    for tag, message in client.hgetall("unacked").items():
        if QUEUE.encode() in message:
            client.hdel("unacked", tag)
            client.zrem("unacked_index", tag)
    client.close()


@pytest.fixture(scope="module")
def _catalog_kept(django_db_blocker):
    """Put the catalog back after this module: the flush after a transactional test empties
    every table, the catalog its data migration filled included."""
    yield
    with django_db_blocker.unblock():
        sync_catalog()


@pytest.fixture
def catalog(_catalog_kept, requires_postgresql):
    if not ResponseAction.objects.exists():
        sync_catalog()


def use_broker(url: str | None) -> None:
    """Send this process's tasks to `url` on this run's queue, or run them in-process (None)."""
    # Celery caches its connection pool, queues and router on first use (and kombu its pools
    # by URL): drop them, to be built again from the configuration below.
    kombu.pools.reset()
    app._pool = None
    app.__dict__.pop("amqp", None)
    app.conf.broker_url = url or ""
    app.conf.task_default_queue = QUEUE if url else "celery"
    app.conf.task_always_eager = url is None


@pytest.fixture
def broker(requires_redis):
    use_broker(requires_redis)
    yield requires_redis
    use_broker(None)


def worker_database_url() -> str:
    """The test database, for the worker: its name is not the one in DATABASE_URL."""
    db = connection.settings_dict
    credentials = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"], safe="")
    host = db["HOST"] or "127.0.0.1"
    return f"postgres://{credentials}@{host}:{db['PORT'] or 5432}/{db['NAME']}"


class Worker:
    """`celery -A responseportal worker` in a process group of its own, logging to a file."""

    def __init__(self, name: str, *, delay: float, **settings: str):
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed in stop())
            prefix=f"celery-{name}-", suffix=".log", delete=False
        )
        env = {
            **os.environ,
            "DATABASE_URL": worker_database_url(),
            "DATABASE_CONN_MAX_AGE": "0",
            "SECRET_KEY": "insecure-key-for-the-worker-under-test",
            "DEBUG": "false",
            "CELERY_BROKER_URL": REDIS_URL,
            "CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
            "CELERY_TASK_DEFAULT_QUEUE": QUEUE,
            "RESPONSE_EXECUTOR": "simulated",
            "SIMULATED_EXECUTOR_DELAY": str(delay),
            "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
            **settings,
        }
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "celery", "-A", "responseportal", "worker"),
                *("--pool=solo", "--loglevel=INFO", f"--hostname={name}@%h"),
                *("--without-gossip", "--without-mingle", "--without-heartbeat"),
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def wait_until_ready(self, timeout: float = 30) -> None:
        wait_for(lambda: " ready." in self.output(), timeout, "the worker to start", self)

    def kill(self) -> None:
        """SIGKILL, as an out-of-memory killer or a pulled plug would: no clean shutdown."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """A warm shutdown (messages it holds go back to the queue), SIGKILL if it lingers."""
        try:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=10)
            self.kill()
        finally:
            self.log.close()
            os.unlink(self.log.name)


def wait_for(condition, timeout: float, what: str, *workers: Worker) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        for worker in workers:
            if worker.process.poll() is not None:
                pytest.fail(f"The worker exited while waiting for {what}:\n{worker.output()}")
        time.sleep(0.1)
    logs = "\n".join(worker.output()[-4000:] for worker in workers)
    pytest.fail(f"Timed out after {timeout} s waiting for {what}.\n{logs}")


@pytest.fixture
def workers(catalog, broker):
    """Start workers with `workers(name, delay=...)`; every one is killed at the end."""
    started: list[Worker] = []

    def start(name: str, *, delay: float = 0, **settings: str) -> Worker:
        worker = Worker(name, delay=delay, **settings)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def status_of(request) -> str:
    request.refresh_from_db()
    return request.status


def approve(acme, operator, admin, endpoints):
    request = submit(acme, operator, endpoints=endpoints)
    services.approve_request(request.pk, actor=admin)
    return request


def effects(request) -> dict[str, int]:
    """How many times the simulated executor had an effect on each target."""
    calls = ExecutorCall.objects.filter(request=request, outcome__in=["succeeded", "failed"])
    counted: dict[str, int] = {}
    for value in calls.values_list("target__value", flat=True):
        counted[value] = counted.get(value, 0) + 1
    return counted


def test_a_worker_runs_approved_requests_to_their_outcome(workers, acme, operator, admin):
    worker = workers("runner", delay=0.1)
    successful = approve(acme, operator, admin, ["ws-1", "ws-2"])
    partial = approve(acme, operator, admin, ["ws-3", "fail-4"])

    wait_for(
        lambda: (
            status_of(successful) == RequestStatus.SUCCESSFUL
            and status_of(partial) == RequestStatus.PARTIALLY_SUCCESSFUL
        ),
        30,
        "both requests to finish",
        worker,
    )

    assert dict(successful.targets.values_list("value", "status")) == {
        "ws-1": TargetStatus.SUCCESSFUL,
        "ws-2": TargetStatus.SUCCESSFUL,
    }
    failed = partial.targets.get(value="fail-4")
    assert (failed.status, failed.message) == (
        TargetStatus.FAILED,
        "Simulated failure: fail-4 did not answer.",
    )
    assert effects(successful) == {"ws-1": 1, "ws-2": 1}
    verbs = list(successful.events.order_by("id").values_list("verb", flat=True))
    assert verbs == [
        "request.submitted",
        "request.approved",
        "execution.queued",
        "execution.started",
        "execution.succeeded",
    ]
    assert "Traceback" not in worker.output()


# The heartbeat, scaled down from the defaults (every 10 s, silent 60 s, beat every 60 s).
HEARTBEAT = {
    "EXECUTION_HEARTBEAT_INTERVAL": "0.5",
    "EXECUTION_HEARTBEAT_TIMEOUT": "2",
    # Redis would hand the message back after an hour: only the heartbeat can resume it here.
    "CELERY_VISIBILITY_TIMEOUT": "3600",
}
SILENT = timedelta(seconds=2)
BEAT_PERIOD = 1.0


def test_a_worker_killed_mid_execution_resumes_once_its_heartbeat_stops(
    workers, acme, operator, admin, record_property
):
    first = workers("doomed", delay=1.0, **HEARTBEAT)
    request = approve(acme, operator, admin, ["ws-1", "ws-2", "ws-3", "ws-4"])
    wait_for(
        lambda: request.targets.filter(status=TargetStatus.SUCCESSFUL).exists(),
        30,
        "the first target to finish",
        first,
    )

    first.kill()
    killed, killed_at = time.monotonic(), timezone.now()

    assert status_of(request) == RequestStatus.IN_PROGRESS
    done_before = set(
        request.targets.filter(status=TargetStatus.SUCCESSFUL).values_list("value", flat=True)
    )
    assert 1 <= len(done_before) < 4
    second = workers("successor", delay=0.2, **HEARTBEAT)
    second.wait_until_ready()
    # Beat's dispatch_stranded, every BEAT_PERIOD instead of every minute.
    resumed_after = None
    deadline = killed + 60
    while time.monotonic() < deadline and resumed_after is None:
        execution.redispatch_stranded(silent=SILENT)
        if request.events.filter(verb="execution.resumed").exists():
            resumed_after = time.monotonic() - killed
        else:
            time.sleep(BEAT_PERIOD)
    assert resumed_after is not None, f"not resumed 60 s after the kill:\n{second.output()}"

    wait_for(
        lambda: status_of(request) == RequestStatus.SUCCESSFUL,
        30,
        "the successor to finish the request",
        second,
    )
    resumed_after = (
        request.events.get(verb="execution.resumed").timestamp - killed_at
    ).total_seconds()
    finished_after = (status_of(request) and request.finished_at - killed_at).total_seconds()
    record_property("resumed_seconds_after_kill", round(resumed_after, 2))
    record_property("finished_seconds_after_kill", round(finished_after, 2))
    print(
        f"\nkilled mid-run: resumed after {resumed_after:.1f} s, finished after "
        f"{finished_after:.1f} s (heartbeat 0.5 s, silent 2 s, beat every 1 s)"
    )

    assert effects(request) == {"ws-1": 1, "ws-2": 1, "ws-3": 1, "ws-4": 1}
    assert set(ExecutorCall.objects.values_list("idempotency_key", flat=True)) == {request.uuid}
    assert request.execution_attempts == 2
    verbs = list(request.events.order_by("id").values_list("verb", flat=True))
    assert verbs[-4:] == [
        "execution.started",
        "execution.redispatched",
        "execution.resumed",
        "execution.succeeded",
    ]
    redispatched = request.events.get(verb="execution.redispatched")
    assert redispatched.data["silent_seconds"] >= 2
    resumed = request.events.get(verb="execution.resumed")
    assert resumed.data["targets_left"] == 4 - len(done_before)


def test_a_worker_killed_in_the_middle_of_a_batch_loses_nothing_and_repeats_no_effect(
    workers, acme, operator, admin, record_property
):
    # Queued while no worker runs: the first worker to start takes them all in one batch.
    requests = [approve(acme, operator, admin, [f"ws-{n}", f"db-{n}"]) for n in range(5)]
    assert {status_of(request) for request in requests} == {RequestStatus.QUEUED}
    first = workers("doomed", delay=0.4, EXECUTION_BATCH_SIZE="10", **HEARTBEAT)
    calls = ExecutorCall.objects.filter(outcome="succeeded")
    wait_for(lambda: calls.count() >= 3, 30, "three targets' effects", first)

    first.kill()
    killed_at = timezone.now()

    for request in requests:
        request.refresh_from_db()
    assert {request.status for request in requests} == {RequestStatus.IN_PROGRESS}
    # One task took them all: the batch.
    assert len({request.execution_task for request in requests}) == 1
    done_before = calls.count()
    assert 3 <= done_before < 10

    second = workers("successor", delay=0.05, **HEARTBEAT)
    second.wait_until_ready()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(
        status_of(request) != RequestStatus.SUCCESSFUL for request in requests
    ):
        execution.redispatch_stranded(silent=SILENT)  # beat's dispatch_stranded
        time.sleep(BEAT_PERIOD)
    statuses = [status_of(request) for request in requests]
    assert statuses == [RequestStatus.SUCCESSFUL] * 5, second.output()[-4000:]
    finished_after = max(r.finished_at - killed_at for r in requests).total_seconds()
    record_property("batch_finished_seconds_after_kill", round(finished_after, 2))

    for request in requests:
        assert effects(request) == {
            value: 1 for value in request.targets.values_list("value", flat=True)
        }
        verbs = list(request.events.order_by("id").values_list("verb", flat=True))
        assert verbs.count("execution.started") == 1
        assert verbs.count("execution.succeeded") == 1
        assert verbs[-3:] == ["execution.redispatched", "execution.resumed", "execution.succeeded"]
        assert request.execution_attempts == 2
    # The effects the killed worker had are not repeated: the successor found them.
    assert ExecutorCall.objects.filter(outcome="duplicate").count() == done_before
    assert verify_chain(chain_of(acme)).first_break is None
    assert "Traceback" not in second.output()


def test_an_approval_while_redis_is_down_runs_once_redis_is_back(
    workers, acme, operator, admin, caplog
):
    request = submit(acme, operator, endpoints=["ws-1"])
    use_broker(UNREACHABLE_REDIS)

    started = time.monotonic()
    services.approve_request(request.pk, actor=admin)
    took = time.monotonic() - started

    assert took < 15, f"the approval waited {took:.1f} s for a broker that is down"
    assert status_of(request) == RequestStatus.QUEUED
    assert request.decided_by == admin
    assert "could not be sent to the workers" in caplog.text

    use_broker(REDIS_URL)
    worker = workers("after-outage", delay=0)
    worker.wait_until_ready()
    time.sleep(0.5)
    assert status_of(request) == RequestStatus.QUEUED  # nothing was in Redis to run
    assert execution.redispatch_stranded(waited=timedelta(0)) == 1

    wait_for(
        lambda: status_of(request) == RequestStatus.SUCCESSFUL,
        30,
        "the re-sent request to run",
        worker,
    )
    assert effects(request) == {"ws-1": 1}
    assert request.events.filter(verb="execution.redispatched").count() == 1


class SmtpSink(socketserver.StreamRequestHandler):
    """Just enough SMTP for Django's backend: every message it is given, kept in `received`."""

    received: list = []

    def reply(self, line: str) -> None:
        self.wfile.write(f"{line}\r\n".encode())

    def handle(self) -> None:
        self.reply("220 sink")
        while line := self.rfile.readline():
            verb = line[:4].upper()
            if verb in {b"EHLO", b"HELO"}:
                self.reply("250 sink")
            elif verb == b"DATA":
                self.reply("354 go on")
                data = []
                while (line := self.rfile.readline()) not in {b".\r\n", b""}:
                    data.append(line[1:] if line.startswith(b"..") else line)
                SmtpSink.received.append(email.message_from_bytes(b"".join(data), policy=default))
                self.reply("250 kept")
            elif verb == b"QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("250 ok")


@pytest.fixture
def smtp():
    SmtpSink.received = []
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), SmtpSink)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_notifications_of_an_outage_are_all_delivered_once_the_broker_is_back(
    workers, acme, operator, admin, smtp, receiver, record_property
):
    """Approvals while Redis is down: every e-mail and webhook call arrives once it is back."""
    approval_settings = ApprovalSettings.for_organization(acme)
    approval_settings.notify_emails = ["soc@acme.example"]
    approval_settings.save()
    use_webhook(acme, receiver)
    use_broker(UNREACHABLE_REDIS)

    requests = [submit(acme, operator, endpoints=[f"ws-{n}"]) for n in range(3)]
    services.approve_request(requests[0].pk, actor=admin)
    services.approve_request(requests[1].pk, actor=admin)
    services.reject_request(requests[2].pk, actor=admin, reason="Not this one")

    assert SmtpSink.received == [] and Receiver.calls == []
    assert Notification.objects.filter(sent_at__isnull=True, attempts=0).count() == 6

    use_broker(REDIS_URL)
    worker = workers(
        "after-outage",
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=str(smtp),
        NOTIFY_WEBHOOK_ALLOW_PRIVATE="true",
        EXECUTION_REDISPATCH_AFTER="0",
    )
    worker.wait_until_ready()
    back = time.monotonic()
    # Past the workers' 30 s head start, beat's next run finds them all due.
    Notification.objects.update(next_attempt_at=timezone.now())
    tasks.deliver_notifications.delay()
    tasks.dispatch_stranded.delay()

    wait_for(
        lambda: Notification.objects.filter(sent_at__isnull=False).count() == 8,
        60,
        "the six notifications of the outage and the two of the outcomes",
        worker,
    )
    took = time.monotonic() - back
    record_property("outage_notifications_delivered_seconds", round(took, 2))
    print(f"\nafter the outage: 8 notifications delivered {took:.1f} s after the broker was back")

    subject = "[Response Portal] {}: Isolate Endpoint in Acme Corporation".format
    expected = sorted(
        [("acme-admin@example.com", subject("Approval needed"))] * 3
        + [("soc@acme.example", subject("Approval needed"))] * 3
        + [("operator@example.com", subject("Approved"))] * 2
        + [("operator@example.com", subject("Rejected"))]
        + [("operator@example.com", subject("Successful"))] * 2
    )
    time.sleep(1)  # anything sent twice would have arrived by now
    assert sorted((m["To"], m["Subject"]) for m in SmtpSink.received) == expected
    events = sorted(json.loads(body)["event"] for _, body in Receiver.calls)
    assert events == sorted(["pending"] * 3 + ["approved"] * 2 + ["rejected"] + ["finished"] * 2)
    assert [status_of(r) for r in requests] == [
        RequestStatus.SUCCESSFUL,
        RequestStatus.SUCCESSFUL,
        RequestStatus.REJECTED,
    ]
    assert set(Notification.objects.values_list("attempts", flat=True)) == {1}
    assert "Traceback" not in worker.output()

"""The executors: the simulated one, and the webhook one against a local HTTP server."""

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from approvals import services
from approvals.execution import steps as execution
from approvals.execution import tasks
from approvals.execution.executors import (
    SIGNATURE_HEADER,
    ExecutorNotConfigured,
    SimulatedExecutor,
    TransientExecutorError,
    WebhookExecutor,
    get_executor,
    sign,
)
from approvals.models import ExecutorCall, RequestStatus

from .approvals_helpers import submit

pytestmark = pytest.mark.django_db

SECRET = "webhook-secret-for-tests"


@pytest.fixture
def job(acme, operator, admin):
    """A queued and started Isolate Endpoint request on ws-1 and fail-2."""
    request = submit(acme, operator, endpoints=["ws-1", "fail-2"])
    services.approve_request(request.pk, actor=admin)
    execution.queue_request(request.pk)
    return execution.start_execution(request.pk)


class TestSimulated:
    def test_it_fails_the_targets_named_fail(self, job):
        results = list(SimulatedExecutor(delay=0).execute(job))

        assert [(r.target_id, r.succeeded) for r in results] == [
            (job.targets[0].id, True),
            (job.targets[1].id, False),
        ]
        assert results[0].message == "Simulated isolate_endpoint on ws-1."
        assert results[1].message == "Simulated failure: fail-2 did not answer."

    def test_it_records_every_call_with_the_idempotency_key(self, job):
        list(SimulatedExecutor(delay=0).execute(job))

        calls = ExecutorCall.objects.order_by("id")
        assert [(c.target.value, c.outcome) for c in calls] == [
            ("ws-1", "succeeded"),
            ("fail-2", "failed"),
        ]
        assert {c.idempotency_key for c in calls} == {job.idempotency_key}
        assert {c.executor for c in calls} == {"simulated"}

    def test_a_duplicate_delivery_is_visible_and_has_no_second_effect(self, job):
        first = list(SimulatedExecutor(delay=0).execute(job))
        second = list(SimulatedExecutor(delay=0).execute(job))

        assert [(r.target_id, r.succeeded, r.message) for r in second] == [
            (r.target_id, r.succeeded, r.message) for r in first
        ]
        outcomes = list(ExecutorCall.objects.order_by("id").values_list("outcome", flat=True))
        assert outcomes == ["succeeded", "failed", "duplicate", "duplicate"]
        assert "not run again" in ExecutorCall.objects.filter(outcome="duplicate").first().detail

    def test_it_takes_the_configured_time_per_target(self, job, settings):
        settings.SIMULATED_EXECUTOR_DELAY = 0.05
        started = time.monotonic()

        list(SimulatedExecutor().execute(job))

        assert time.monotonic() - started >= 0.1


class Automation:
    """A stand-in for the provider's automation: a local HTTP server with a scripted answer."""

    def __init__(self):
        self.calls: list[dict] = []
        self.answer: Callable[[dict], tuple[int, bytes]] = self.all_successful
        self.delay = 0.0
        automation = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                call = {"headers": dict(self.headers), "body": body, "path": self.path}
                automation.calls.append(call)
                time.sleep(automation.delay)
                status, reply = automation.answer(call)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/run"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @staticmethod
    def all_successful(call):
        targets = json.loads(call["body"])["targets"]
        results = [
            {"target": t["value"], "status": "successful", "message": f"done {t['value']}"}
            for t in targets
        ]
        return 200, json.dumps({"results": results}).encode()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def automation():
    server = Automation()
    yield server
    server.stop()


@pytest.fixture
def webhook(automation, settings):
    settings.RESPONSE_EXECUTOR = "webhook"
    settings.EXECUTOR_WEBHOOK_URL = automation.url
    settings.EXECUTOR_WEBHOOK_SECRET = SECRET
    settings.EXECUTOR_WEBHOOK_TIMEOUT = 2
    return get_executor()


class TestWebhook:
    def test_it_posts_the_job_signed_with_hmac_sha256(self, webhook, automation, job, acme):
        results = list(webhook.execute(job))

        [call] = automation.calls
        body = call["body"]
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert call["headers"][SIGNATURE_HEADER] == expected == sign(body, SECRET)
        assert call["headers"]["Content-Type"] == "application/json"
        assert call["headers"]["Idempotency-Key"] == str(job.idempotency_key)
        assert call["path"] == "/run"
        assert json.loads(body) == {
            "action": "isolate_endpoint",
            "parameters": {"endpoints": ["ws-1", "fail-2"], "description": "Beaconing"},
            "targets": [
                {"position": 0, "kind": "endpoint", "value": "ws-1"},
                {"position": 1, "kind": "endpoint", "value": "fail-2"},
            ],
            "idempotency_key": str(job.idempotency_key),
            "request": {"uuid": str(job.idempotency_key), "organization": "acme"},
        }
        assert [(r.succeeded, r.message) for r in results] == [
            (True, "done ws-1"),
            (True, "done fail-2"),
        ]

    def test_a_signature_made_with_another_secret_does_not_match(self, webhook, automation, job):
        list(webhook.execute(job))

        [call] = automation.calls
        assert call["headers"][SIGNATURE_HEADER] != sign(call["body"], "another-secret")

    def test_the_reply_gives_per_target_results_by_value_or_position(
        self, webhook, automation, job
    ):
        automation.answer = lambda call: (
            200,
            json.dumps(
                {
                    "results": [
                        {"position": 1, "status": "failed", "message": "agent offline"},
                        {"target": "ws-1", "status": "successful", "message": "isolated"},
                    ]
                }
            ).encode(),
        )

        results = list(webhook.execute(job))

        assert [(r.target_id, r.succeeded, r.message) for r in results] == [
            (job.targets[0].id, True, "isolated"),
            (job.targets[1].id, False, "agent offline"),
        ]

    def test_a_target_missing_from_the_reply_fails(self, webhook, automation, job):
        automation.answer = lambda call: (
            200,
            b'{"results": [{"target": "ws-1", "status": "successful"}]}',
        )

        results = list(webhook.execute(job))

        assert results[1].succeeded is False
        assert results[1].message == "The executor gave no result for this target."

    @pytest.mark.parametrize(
        "reply,message",
        [
            (b"<html>oops</html>", 'not JSON with a "results" list'),
            (b'{"results": {"ws-1": "ok"}}', 'not JSON with a "results" list'),
            (b'{"results": [{"target": "ws-1", "status": "maybe"}]}', "unknown status `maybe`"),
        ],
    )
    def test_a_reply_it_cannot_read_fails_the_targets(
        self, webhook, automation, job, reply, message
    ):
        automation.answer = lambda call: (200, reply)

        results = list(webhook.execute(job))

        assert results[0].succeeded is False and message in results[0].message

    @pytest.mark.parametrize("status", [500, 502, 503, 429])
    def test_a_server_error_is_transient(self, webhook, automation, job, status):
        automation.answer = lambda call: (status, b'{"error": "busy"}')

        with pytest.raises(TransientExecutorError, match=f"HTTP {status}"):
            list(webhook.execute(job))
        assert ExecutorCall.objects.get().outcome == "transient"

    def test_a_timeout_is_transient(self, webhook, automation, job, settings):
        automation.delay = 1.5
        slow = WebhookExecutor(timeout=0.3)

        with pytest.raises(TransientExecutorError, match="did not answer within 0.3 s"):
            list(slow.execute(job))

    def test_a_server_that_is_down_is_transient(self, webhook, automation, job):
        automation.stop()

        with pytest.raises(TransientExecutorError, match="could not be reached"):
            list(webhook.execute(job))

    @pytest.mark.parametrize("status", [400, 403, 422])
    def test_a_client_error_fails_every_target_with_the_reply(
        self, webhook, automation, job, status
    ):
        automation.answer = lambda call: (status, b'{"error": "unknown action"}')

        results = list(webhook.execute(job))

        assert [r.succeeded for r in results] == [False, False]
        assert results[0].message == (
            f'The executor refused the request (HTTP {status}): {{"error": "unknown action"}}'
        )
        call = ExecutorCall.objects.get()
        assert (call.executor, call.outcome, call.detail) == (
            "webhook",
            "refused",
            f"HTTP {status}",
        )
        assert call.idempotency_key == job.idempotency_key

    def test_a_redirect_is_not_followed(self, webhook, automation, job):
        automation.answer = lambda call: (307, b"")

        results = list(webhook.execute(job))

        assert len(automation.calls) == 1
        assert results[0].message == "The executor refused the request (HTTP 307)."

    @pytest.mark.parametrize(
        "url,secret,message",
        [
            ("", SECRET, "must be an http:// or https:// URL"),
            ("file:///etc/passwd", SECRET, "must be an http:// or https:// URL"),
            ("http://127.0.0.1:9/", "", "EXECUTOR_WEBHOOK_SECRET is not set"),
        ],
    )
    def test_it_refuses_to_run_without_its_settings(self, settings, url, secret, message):
        settings.EXECUTOR_WEBHOOK_URL = url
        settings.EXECUTOR_WEBHOOK_SECRET = secret

        with pytest.raises(ExecutorNotConfigured, match=message):
            get_executor("webhook")


class TestWebhookThroughTheTask:
    def test_a_5xx_is_retried_and_the_request_then_succeeds(self, webhook, automation, job):
        replies = iter([(503, b""), (502, b"")])
        automation.answer = lambda call: next(replies, None) or Automation.all_successful(call)

        tasks.execute_request.apply(args=[job.request_id])

        assert len(automation.calls) == 3
        keys = {call["headers"]["Idempotency-Key"] for call in automation.calls}
        assert keys == {str(job.idempotency_key)}
        request = ExecutorCall.objects.first().request
        assert request.status == RequestStatus.SUCCESSFUL
        assert list(ExecutorCall.objects.values_list("outcome", flat=True)) == [
            "transient",
            "transient",
            "ok",
        ]

    def test_a_4xx_fails_the_request_without_a_retry(self, webhook, automation, job):
        automation.answer = lambda call: (400, b"unknown action")

        tasks.execute_request.apply(args=[job.request_id])

        assert len(automation.calls) == 1
        request = ExecutorCall.objects.get().request
        assert request.status == RequestStatus.FAILED
        assert set(request.targets.values_list("message", flat=True)) == {
            "The executor refused the request (HTTP 400): unknown action"
        }

    def test_an_executor_down_for_good_fails_the_request_after_the_last_retry(
        self, webhook, automation, job
    ):
        automation.answer = lambda call: (503, b"")

        tasks.execute_request.apply(args=[job.request_id])

        assert len(automation.calls) == tasks.MAX_RETRIES + 1
        request = ExecutorCall.objects.first().request
        assert request.status == RequestStatus.FAILED
        assert request.targets.first().message.startswith(
            "Gave up after 6 attempts: The executor answered HTTP 503"
        )


def test_the_setting_chooses_the_executor(settings):
    settings.RESPONSE_EXECUTOR = "simulated"
    assert isinstance(get_executor(), SimulatedExecutor)
    settings.RESPONSE_EXECUTOR = "telepathy"
    with pytest.raises(ExecutorNotConfigured, match="expected one of simulated, webhook"):
        get_executor()

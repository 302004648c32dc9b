"""The execution task in eager mode (no broker): approved work runs after commit, once."""

from dataclasses import replace

import pytest
from celery.exceptions import Retry

from approvals import services
from approvals.execution import steps as execution
from approvals.execution import tasks
from approvals.execution.executors import SimulatedExecutor, TargetResult, TransientExecutorError
from approvals.models import ExecutorCall, RequestStatus, TargetStatus

from .approvals_helpers import submit, turn_on_auto_approval

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _instant_executor(settings):
    settings.SIMULATED_EXECUTOR_DELAY = 0
    settings.RESPONSE_EXECUTOR = "simulated"


def verbs(request):
    return list(request.events.order_by("id").values_list("verb", flat=True))


def statuses(request):
    return dict(request.targets.values_list("value", "status"))


def test_an_approved_request_runs_to_successful_after_commit(
    acme, operator, admin, django_capture_on_commit_callbacks
):
    request = submit(acme, operator, endpoints=["ws-1", "ws-2"])
    with django_capture_on_commit_callbacks(execute=True):
        services.approve_request(request.pk, actor=admin)

    request.refresh_from_db()
    assert request.status == RequestStatus.SUCCESSFUL
    assert request.queued_at <= request.started_at <= request.finished_at
    assert request.execution_attempts == 1
    assert statuses(request) == {"ws-1": "successful", "ws-2": "successful"}
    assert verbs(request) == [
        "request.submitted",
        "request.approved",
        "execution.queued",
        "execution.started",
        "execution.succeeded",
    ]
    finished = request.events.get(verb="execution.succeeded")
    assert finished.actor is None and finished.source == "system"
    assert [t["status"] for t in finished.data["targets"]] == ["successful", "successful"]


def test_nothing_runs_before_the_approval_commits(acme, operator, admin):
    request = submit(acme, operator)
    services.approve_request(request.pk, actor=admin)  # the test's transaction never commits

    request.refresh_from_db()
    assert request.status == RequestStatus.APPROVED
    assert not ExecutorCall.objects.exists()


def test_an_auto_approved_request_runs_at_once(acme, operator, django_capture_on_commit_callbacks):
    turn_on_auto_approval(acme)
    with django_capture_on_commit_callbacks(execute=True):
        request = submit(acme, operator)

    request.refresh_from_db()
    assert request.status == RequestStatus.SUCCESSFUL


def test_an_action_that_needs_no_approval_runs_at_once(
    acme, operator, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        request = submit(
            acme,
            operator,
            key="dump_process_memory",
            endpoints=["ws-1"],
            parameters={"endpoints": ["ws-1"], "process": "evil.exe"},
        )

    request.refresh_from_db()
    assert request.status == RequestStatus.SUCCESSFUL


def test_a_target_that_fails_makes_the_request_partially_successful(
    acme, operator, admin, django_capture_on_commit_callbacks
):
    request = submit(acme, operator, endpoints=["ws-1", "fail-2", "ws-3"])
    with django_capture_on_commit_callbacks(execute=True):
        services.approve_request(request.pk, actor=admin)

    request.refresh_from_db()
    assert request.status == RequestStatus.PARTIALLY_SUCCESSFUL
    failed = request.targets.get(value="fail-2")
    assert failed.status == TargetStatus.FAILED
    assert "did not answer" in failed.message
    assert verbs(request)[-1] == "execution.partially_succeeded"


def test_every_target_failing_fails_the_request(
    acme, operator, admin, django_capture_on_commit_callbacks
):
    request = submit(acme, operator, endpoints=["fail-1", "fail-2"])
    with django_capture_on_commit_callbacks(execute=True):
        services.approve_request(request.pk, actor=admin)

    request.refresh_from_db()
    assert request.status == RequestStatus.FAILED
    assert verbs(request)[-1] == "execution.failed"


def queued(acme, operator, admin, endpoints=("ws-1",)):
    request = submit(acme, operator, endpoints=list(endpoints))
    services.approve_request(request.pk, actor=admin)
    execution.queue_request(request.pk)
    return request


def test_running_the_task_twice_does_the_work_once(acme, operator, admin):
    request = queued(acme, operator, admin, endpoints=["ws-1", "ws-2"])

    assert tasks.execute_request.apply(args=[request.pk]).get() == RequestStatus.SUCCESSFUL
    assert tasks.execute_request.apply(args=[request.pk]).get() == "nothing to do"

    request.refresh_from_db()
    assert request.execution_attempts == 1
    assert ExecutorCall.objects.filter(request=request).count() == 2
    assert verbs(request).count("execution.succeeded") == 1


def test_a_delivery_again_after_a_lost_worker_finishes_only_what_is_left(acme, operator, admin):
    request = queued(acme, operator, admin, endpoints=["ws-1", "ws-2", "ws-3"])
    # The first worker finished ws-1, ran ws-2's effect, and died before recording its result.
    job = execution.start_execution(request.pk)
    simulated = SimulatedExecutor(delay=0)
    ws1, ws2, _ = job.targets
    [result] = simulated.execute(replace(job, targets=[ws1]))
    execution.finish_target(ws1.id, succeeded=result.succeeded, message=result.message)
    list(simulated.execute(replace(job, targets=[ws2])))

    assert tasks.execute_request.apply(args=[request.pk]).get() == RequestStatus.SUCCESSFUL

    request.refresh_from_db()
    assert request.execution_attempts == 2
    assert "execution.resumed" in verbs(request)
    effects = ExecutorCall.objects.filter(request=request, outcome__in=["succeeded", "failed"])
    assert sorted(effects.values_list("target__value", flat=True)) == ["ws-1", "ws-2", "ws-3"]
    duplicate = ExecutorCall.objects.get(request=request, outcome="duplicate")
    assert duplicate.target.value == "ws-2"
    assert duplicate.idempotency_key == request.uuid


class FlakyExecutor:
    """Transient errors `failures` times, then success."""

    name = "flaky"
    calls = 0

    def __init__(self, failures):
        self.failures = failures

    def execute(self, job):
        FlakyExecutor.calls += 1
        if FlakyExecutor.calls <= self.failures:
            raise TransientExecutorError(
                "The executor answered HTTP 503; the call will be retried."
            )
        for target in job.targets:
            yield TargetResult(target.id, True, "done")


@pytest.fixture
def flaky(monkeypatch):
    def use(failures):
        FlakyExecutor.calls = 0
        monkeypatch.setattr(tasks, "get_executor", lambda: FlakyExecutor(failures))

    return use


def test_a_transient_error_is_retried_then_succeeds(acme, operator, admin, flaky):
    flaky(2)
    request = queued(acme, operator, admin)

    tasks.execute_request.apply(args=[request.pk])

    request.refresh_from_db()
    assert request.status == RequestStatus.SUCCESSFUL
    assert request.execution_attempts == 3
    assert verbs(request).count("execution.resumed") == 2


def test_the_retries_back_off_exponentially_up_to_a_limit():
    task = tasks.execute_request
    assert task.autoretry_for == (TransientExecutorError,)
    assert task.retry_backoff and task.retry_backoff_max == 300
    assert task.max_retries == tasks.MAX_RETRIES == 5
    assert task.acks_late and task.reject_on_worker_lost


def test_a_transient_error_asks_celery_for_a_retry(acme, operator, admin, flaky, monkeypatch):
    flaky(1)
    request = queued(acme, operator, admin)
    retried = []

    def retry(*args, **kwargs):
        retried.append(kwargs)
        raise Retry()

    monkeypatch.setattr(tasks.execute_request, "retry", retry)
    with pytest.raises(Retry):
        tasks.execute_request.run(request.pk)

    assert isinstance(retried[0]["exc"], TransientExecutorError)
    request.refresh_from_db()
    assert request.status == RequestStatus.IN_PROGRESS


def test_after_the_last_retry_the_request_fails_with_a_message(acme, operator, admin, flaky):
    flaky(100)
    request = queued(acme, operator, admin, endpoints=["ws-1", "ws-2"])

    tasks.execute_request.apply(args=[request.pk])

    request.refresh_from_db()
    assert request.status == RequestStatus.FAILED
    assert request.execution_attempts == tasks.MAX_RETRIES + 1
    for target in request.targets.all():
        assert target.status == TargetStatus.FAILED
        assert target.message.startswith("Gave up after 6 attempts: The executor answered HTTP 503")


def test_an_unknown_executor_fails_the_request_with_a_message(acme, operator, admin, settings):
    settings.RESPONSE_EXECUTOR = "carrier-pigeon"
    request = queued(acme, operator, admin)

    tasks.execute_request.apply(args=[request.pk])

    request.refresh_from_db()
    assert request.status == RequestStatus.FAILED
    assert "RESPONSE_EXECUTOR='carrier-pigeon' is not an executor" in (
        request.targets.get().message
    )


def test_a_broker_that_is_down_leaves_the_request_queued(
    acme, operator, admin, monkeypatch, django_capture_on_commit_callbacks, caplog
):
    def down(*args, **kwargs):
        raise ConnectionRefusedError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(tasks.execute_request, "delay", down)
    request = submit(acme, operator)
    with django_capture_on_commit_callbacks(execute=True):
        services.approve_request(request.pk, actor=admin)

    request.refresh_from_db()
    assert request.status == RequestStatus.QUEUED
    assert "the periodic re-send (dispatch_stranded) will deliver it" in caplog.text


def test_a_request_not_yet_queued_is_not_run(acme, operator, admin):
    request = submit(acme, operator)
    services.approve_request(request.pk, actor=admin)

    assert tasks.execute_request.apply(args=[request.pk]).get() == "nothing to do"
    request.refresh_from_db()
    assert request.status == RequestStatus.APPROVED


@pytest.mark.parametrize(
    "status", [RequestStatus.PENDING, RequestStatus.REJECTED, RequestStatus.CANCELLED]
)
def test_a_request_that_was_not_approved_never_runs(acme, operator, status):
    request = submit(acme, operator)
    request.status = status
    request.save()

    assert tasks.execute_request.apply(args=[request.pk]).get() == "nothing to do"
    assert not ExecutorCall.objects.exists()

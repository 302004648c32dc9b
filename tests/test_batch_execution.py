"""Execution in batches: a worker that starts one queued request takes others with it, runs
their jobs together and finishes them together; their own tasks then find nothing to do, and a
batch cut short loses nothing and repeats no target's effect."""

import threading
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.db import connection
from django.utils import timezone

from approvals import services
from approvals.execution import steps as execution
from approvals.execution import tasks
from approvals.execution.executors import SimulatedExecutor, TransientExecutorError
from approvals.models import ActionRequest, ExecutorCall, Notification, RequestStatus
from audit.chain import chain_of, verify_chain
from responseportal.models import Role

from .approvals_helpers import submit
from .conftest import _member

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _instant_executor(settings):
    settings.SIMULATED_EXECUTOR_DELAY = 0
    settings.RESPONSE_EXECUTOR = "simulated"


def queued(organization, operator, admin, endpoints=("ws-1",)):
    request = submit(organization, operator, endpoints=endpoints)
    services.approve_request(request.pk, actor=admin)
    assert execution.queue_request(request.pk)
    return request


def verbs(request):
    return list(request.events.order_by("id").values_list("verb", flat=True))


def effects() -> dict[tuple[int, str], int]:
    """How many times the simulated executor had an effect on each (request, target)."""
    counted: dict[tuple[int, str], int] = {}
    for key in ExecutorCall.objects.filter(outcome__in=["succeeded", "failed"]).values_list(
        "request_id", "target__value"
    ):
        counted[key] = counted.get(key, 0) + 1
    return counted


class TestStart:
    def test_a_task_takes_other_queued_requests_up_to_the_batch_size(self, acme, operator, admin):
        requests = [queued(acme, operator, admin, [f"ws-{n}"]) for n in range(5)]
        starter = requests[2]

        jobs = execution.start_executions(starter.pk, runner="task-a", batch_size=3)

        # The request of the task first, then the oldest other queued requests.
        assert [job.request_id for job in jobs] == [starter.pk, requests[0].pk, requests[1].pk]
        for request in requests:
            request.refresh_from_db()
        taken = [r for r in requests if r.pk in {job.request_id for job in jobs}]
        assert {(r.status, r.execution_task, r.execution_attempts) for r in taken} == {
            (RequestStatus.IN_PROGRESS, "task-a", 1)
        }
        assert [r.status for r in requests[3:]] == [RequestStatus.QUEUED] * 2
        for request in taken:
            assert verbs(request).count("execution.started") == 1
        assert [[t.value for t in job.targets] for job in jobs] == [["ws-2"], ["ws-0"], ["ws-1"]]
        assert verify_chain(chain_of(acme)).first_break is None

    def test_the_tasks_of_requests_another_task_took_find_nothing_to_do(
        self, acme, operator, admin, django_assert_max_num_queries
    ):
        first, second = (queued(acme, operator, admin, [f"ws-{n}"]) for n in range(2))
        execution.start_executions(first.pk, runner="task-a", batch_size=5)

        with django_assert_max_num_queries(1):
            assert execution.start_executions(second.pk, runner="task-b", batch_size=5) == []
        # As a worker delivers it: under its own id.
        assert tasks.execute_request.apply(args=[second.pk], task_id="task-b").get() == (
            "nothing to do"
        )
        second.refresh_from_db()
        assert second.execution_attempts == 1 and verbs(second).count("execution.resumed") == 0

    def test_its_own_task_delivered_again_resumes_it(self, acme, operator, admin):
        first, second = (queued(acme, operator, admin, [f"ws-{n}"]) for n in range(2))
        execution.start_executions(first.pk, runner="task-a", batch_size=5)

        [job] = execution.start_executions(second.pk, runner="task-a", batch_size=5)

        assert job.request_id == second.pk
        assert verbs(second)[-2:] == ["execution.started", "execution.resumed"]

    def test_a_request_sent_again_is_resumed_by_the_first_delivery_alone(
        self, acme, operator, admin, monkeypatch
    ):
        monkeypatch.setattr(execution, "send", lambda pk: None)
        first, second = (queued(acme, operator, admin, [f"ws-{n}"]) for n in range(2))
        execution.start_executions(first.pk, runner="task-a", batch_size=5)
        assert execution.redispatch_stranded(silent=timedelta(0)) == 2

        assert [j.request_id for j in execution.start_executions(second.pk, runner="task-c")] == [
            second.pk
        ]
        assert execution.start_executions(second.pk, runner="task-d") == []
        second.refresh_from_db()
        assert second.execution_task == "task-c"

    def test_the_heartbeat_of_a_batch_marks_its_requests_still_in_progress(
        self, acme, operator, admin
    ):
        requests = [queued(acme, operator, admin, [f"ws-{n}"]) for n in range(3)]
        jobs = execution.start_executions(requests[0].pk, runner="task-a", batch_size=2)
        long_ago = timezone.now() - timedelta(hours=1)
        ActionRequest.objects.update(heartbeat_at=long_ago)
        execution.finish_executions([jobs[1].request_id])

        assert execution.beat_all(r.pk for r in requests) == 1

        beats = dict(ActionRequest.objects.values_list("pk", "heartbeat_at"))
        assert beats[jobs[0].request_id] > long_ago
        assert beats[jobs[1].request_id] == beats[requests[2].pk] == long_ago


class TestBatch:
    def test_a_batch_runs_and_finishes_every_request_once(
        self, acme, globex, operator, admin, outsider, django_assert_max_num_queries
    ):
        globex_operator = _member("globex-operator", globex, Role.OPERATOR)
        requests = [queued(acme, operator, admin, [f"ws-{n}", f"db-{n}"]) for n in range(6)]
        requests += [queued(globex, globex_operator, outsider, [f"gx-{n}"]) for n in range(3)]
        requests.append(queued(acme, operator, admin, ["fail-1"]))
        jobs = execution.start_executions(requests[0].pk, runner="task-a", batch_size=20)
        assert len(jobs) == 10

        # 10 requests run on their own take over 10 statements each to finish alone.
        with django_assert_max_num_queries(45):
            summary = tasks.run_batch(jobs)

        assert summary == "10 finished, 0 to retry, of a batch of 10"
        statuses = dict(
            ActionRequest.objects.filter(pk__in=[r.pk for r in requests]).values_list(
                "pk", "status"
            )
        )
        assert statuses == {
            **{r.pk: RequestStatus.SUCCESSFUL for r in requests[:-1]},
            requests[-1].pk: RequestStatus.FAILED,
        }
        assert set(effects().values()) == {1} and len(effects()) == 6 * 2 + 3 + 1
        for request in requests:
            assert verbs(request)[-2:] == ["execution.started", FINISHED[statuses[request.pk]]]
            event = request.events.get(verb=FINISHED[statuses[request.pk]])
            assert event.data["targets"] == [
                {"value": t.value, "status": t.status, "message": t.message}
                for t in request.targets.order_by("position")
            ]
        assert Notification.objects.filter(kind="finished").count() == 10
        assert verify_chain(chain_of(acme)).first_break is None
        assert verify_chain(chain_of(globex)).first_break is None

    def test_a_batch_cut_short_is_resumed_request_by_request_and_repeats_no_effect(
        self, acme, operator, admin, monkeypatch
    ):
        monkeypatch.setattr(execution, "send", lambda pk: None)
        requests = [queued(acme, operator, admin, [f"ws-{n}", f"db-{n}"]) for n in range(4)]
        jobs = execution.start_executions(requests[0].pk, runner="task-a", batch_size=10)
        # The worker ran the first two requests' effects, then died before recording anything.
        list(SimulatedExecutor(delay=0).execute_many(jobs[:2]))

        assert execution.redispatch_stranded(silent=timedelta(0)) == 4
        for request in requests:  # the deliveries of the re-sent requests
            assert tasks.execute_request.apply(args=[request.pk]).get() == (
                RequestStatus.SUCCESSFUL
            )

        assert effects() == {
            (r.pk, v): 1 for r in requests for v in (r.targets.values_list("value", flat=True))
        }
        duplicates = ExecutorCall.objects.filter(outcome="duplicate")
        assert set(duplicates.values_list("request_id", flat=True)) == {
            jobs[0].request_id,
            jobs[1].request_id,
        }
        for request in requests:
            assert verbs(request)[-4:] == [
                "execution.started",
                "execution.redispatched",
                "execution.resumed",
                "execution.succeeded",
            ]

    def test_a_request_whose_executor_says_not_now_is_tried_again_alone(
        self, acme, operator, admin, monkeypatch, django_capture_on_commit_callbacks
    ):
        requests = [queued(acme, operator, admin, [f"ws-{n}"]) for n in range(3)]
        jobs = execution.start_executions(requests[0].pk, runner="task-a", batch_size=10)
        busy = jobs[1].request_id

        class OneByOne:
            """An executor without batches, whose automation is busy for one request."""

            def execute(self, job):
                if job.request_id == busy:
                    raise TransientExecutorError("HTTP 503")
                yield from SimulatedExecutor(delay=0).execute(job)

        monkeypatch.setattr(tasks, "get_executor", OneByOne)
        sent = []
        monkeypatch.setattr(
            execution, "send", lambda pk, countdown=None: sent.append((pk, countdown))
        )
        with django_capture_on_commit_callbacks(execute=True):
            assert tasks.run_batch(jobs) == "2 finished, 1 to retry, of a batch of 3"

        assert sent == [(busy, tasks.BATCH_RETRY_AFTER.total_seconds())]
        waiting = ActionRequest.objects.get(pk=busy)
        assert waiting.status == RequestStatus.IN_PROGRESS and waiting.execution_task == ""
        assert waiting.heartbeat_at > waiting.started_at + timedelta(seconds=4)
        monkeypatch.setattr(tasks, "get_executor", lambda: SimulatedExecutor(delay=0))
        assert tasks.execute_request.apply(args=[busy]).get() == RequestStatus.SUCCESSFUL
        assert verbs(waiting)[-2:] == ["execution.resumed", "execution.succeeded"]
        assert set(effects().values()) == {1} and len(effects()) == 3


FINISHED = {
    RequestStatus.SUCCESSFUL: "execution.succeeded",
    RequestStatus.FAILED: "execution.failed",
}


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_two_workers_starting_batches_at_once_take_each_request_once(
    requires_postgresql, acme, operator, admin, monkeypatch
):
    monkeypatch.setattr(execution, "send", lambda pk: None)  # queued, as if no worker ran yet
    requests = [submit(acme, operator, endpoints=[f"ws-{n}"]) for n in range(12)]
    for request in requests:
        services.approve_request(request.pk, actor=admin)
    assert set(ActionRequest.objects.values_list("status", flat=True)) == {RequestStatus.QUEUED}
    start = threading.Barrier(2)
    taken: dict[str, list[int]] = {}

    def worker(runner: str, first: int) -> None:
        try:
            start.wait()
            jobs = execution.start_executions(first, runner=runner, batch_size=12)
            taken[runner] = [job.request_id for job in jobs]
            tasks.run_batch(jobs)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=worker, args=("task-a", requests[0].pk)),
        threading.Thread(target=worker, args=("task-b", requests[-1].pk)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # Each request in one batch exactly; the second to lock found the other's taken (or,
    # started first, took them all and left the other nothing).
    assert sorted(taken["task-a"] + taken["task-b"]) == sorted(r.pk for r in requests)
    statuses = set(ActionRequest.objects.values_list("status", flat=True))
    assert statuses == {RequestStatus.SUCCESSFUL}
    for request in requests:
        assert verbs(request).count("execution.started") == 1
    assert set(effects().values()) == {1} and len(effects()) == 12
    assert verify_chain(chain_of(acme)).first_break is None


class TestBatchSize:
    """A worker batches only where it pays: with an executor that takes several jobs at once."""

    @staticmethod
    def task(*, eager=False, task_id="task-a"):
        return SimpleNamespace(request=SimpleNamespace(is_eager=eager, id=task_id))

    def test_a_worker_with_an_executor_taking_many_jobs_starts_a_batch(self, settings):
        settings.EXECUTION_BATCH_SIZE = 7
        assert tasks.batch_size(self.task()) == 7

    def test_a_worker_whose_executor_runs_jobs_one_by_one_starts_its_own_request_alone(
        self, settings
    ):
        # The webhook executor calls the endpoint once per request: a batch would only make the
        # last of it wait for the others while another worker sits idle.
        settings.EXECUTION_BATCH_SIZE = 7
        settings.RESPONSE_EXECUTOR = "webhook"
        assert tasks.batch_size(self.task()) == 1

    def test_in_process_or_called_directly_a_task_runs_its_own_request_alone(self, settings):
        settings.EXECUTION_BATCH_SIZE = 7
        assert tasks.batch_size(self.task(eager=True)) == 1
        assert tasks.batch_size(self.task(task_id=None)) == 1

    def test_an_executor_not_configured_leaves_the_task_its_own_request(self, settings):
        settings.RESPONSE_EXECUTOR = "nowhere"
        assert tasks.batch_size(self.task()) == 1

    def test_the_webhook_executor_has_no_batch_call(self):
        # What the rule above relies on; a batch call added to it makes batching its default.
        from approvals.execution.executors import WebhookExecutor

        assert not hasattr(WebhookExecutor, "execute_many")
        assert hasattr(SimulatedExecutor, "execute_many")

"""A running execution's heartbeat, and the re-send of a request whose heartbeat stopped.

The real worker killed mid-run, with the time its request took to resume, is in
`test_celery_worker.py`.
"""

import threading
import time
from datetime import timedelta

import pytest
from celery.exceptions import Retry
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from actions.models import ResponseAction
from actions.sync import sync_catalog
from approvals import services
from approvals.execution import steps as execution
from approvals.execution import tasks
from approvals.execution.executors import (
    SimulatedExecutor,
    TargetResult,
    TransientExecutorError,
)
from approvals.execution.heartbeat import Heartbeat
from approvals.models import ActionRequest, RequestStatus, TargetStatus

from .approvals_helpers import submit
from .test_settings import load_settings

pytestmark = pytest.mark.django_db


def running(acme, operator, admin, endpoints=("ws-1", "ws-2")):
    """A request in progress, as a worker that took it leaves it, and its job."""
    request = submit(acme, operator, endpoints=list(endpoints))
    services.approve_request(request.pk, actor=admin)
    execution.queue_request(request.pk)
    job = execution.start_execution(request.pk)
    request.refresh_from_db()
    return request, job


def silent_for(request, seconds: float, **changes) -> None:
    """As if its worker had last marked it alive `seconds` ago."""
    ago = timezone.now() - timedelta(seconds=seconds)
    ActionRequest.objects.filter(pk=request.pk).update(heartbeat_at=ago, **changes)


@pytest.fixture
def sent(monkeypatch):
    sent = []
    monkeypatch.setattr(execution, "send", sent.append)
    return sent


class TestTheThread:
    def test_it_beats_every_interval_while_the_work_lasts_and_never_after(self):
        beats = []
        with Heartbeat(lambda: beats.append(time.monotonic()), interval=0.05) as heartbeat:
            time.sleep(0.5)
        stopped = len(beats)
        time.sleep(0.2)

        assert len(beats) == stopped == heartbeat.beats
        assert 4 <= stopped <= 10  # 0.5 s / 0.05 s, with room for a busy machine
        gaps = [later - earlier for earlier, later in zip(beats, beats[1:], strict=False)]
        assert min(gaps) >= 0.04

    def test_a_failing_beat_is_logged_and_the_next_one_comes(self, caplog):
        calls = []

        def beat():
            calls.append(1)
            if len(calls) == 1:
                raise ConnectionError("the database went away")

        with Heartbeat(beat, interval=0.03):
            time.sleep(0.3)

        assert len(calls) >= 3
        assert "A heartbeat failed; the next one is in 0.03 s." in caplog.text

    def test_a_short_run_ends_at_once(self):
        started = time.monotonic()
        with Heartbeat(lambda: None, interval=60):
            pass
        assert time.monotonic() - started < 1

    @pytest.mark.parametrize("interval", [0, -1, float("nan")])
    def test_an_interval_must_be_positive(self, interval):
        with pytest.raises(ValueError, match="expected a positive number"):
            Heartbeat(lambda: None, interval=interval)


class TestBeats:
    def test_starting_and_each_finished_target_mark_the_request_alive(self, acme, operator, admin):
        before = timezone.now()
        request, job = running(acme, operator, admin)
        assert request.heartbeat_at >= before

        silent_for(request, 50)
        execution.finish_target(job.targets[0].id, succeeded=True)
        request.refresh_from_db()
        assert request.heartbeat_at >= before

    def test_a_worker_with_its_heartbeat_thread_records_a_result_without_a_beat(
        self, acme, operator, admin
    ):
        request, job = running(acme, operator, admin, endpoints=["ws-1", "ws-2"])
        silent_for(request, 50)
        request.refresh_from_db()
        silent_since = request.heartbeat_at
        assert execution.finish_target(job.targets[0].id, succeeded=True, heartbeat=False)
        request.refresh_from_db()
        assert request.heartbeat_at == silent_since
        assert request.targets.get(pk=job.targets[0].id).status == TargetStatus.SUCCESSFUL

    def test_only_a_request_in_progress_beats(self, acme, operator, admin):
        request, _ = running(acme, operator, admin)
        assert execution.beat(request.pk) is True

        for status in (RequestStatus.QUEUED, RequestStatus.SUCCESSFUL, RequestStatus.PENDING):
            ActionRequest.objects.filter(pk=request.pk).update(status=status, heartbeat_at=None)
            assert execution.beat(request.pk) is False
            request.refresh_from_db()
            assert request.heartbeat_at is None
        assert execution.beat(10**9) is False

    def test_a_retry_waiting_in_its_worker_is_alive_until_it_is_due(
        self, acme, operator, admin, monkeypatch, sent
    ):
        request = submit(acme, operator)
        services.approve_request(request.pk, actor=admin)
        execution.queue_request(request.pk)

        class Unavailable:
            def execute(self, job):
                raise TransientExecutorError("The executor answered HTTP 503.")
                yield  # a generator, like every executor

        monkeypatch.setattr(tasks, "get_executor", Unavailable)
        monkeypatch.setattr(tasks.execute_request, "retry", lambda **kwargs: Retry())
        before = timezone.now()
        with pytest.raises(Retry):
            tasks.execute_request.run(request.pk)

        request.refresh_from_db()
        # The first retry waits at most 5 s (retry_backoff=5, doubled per retry, at most 300).
        assert before + timedelta(seconds=5) <= request.heartbeat_at
        assert request.heartbeat_at <= timezone.now() + timedelta(seconds=5)
        assert execution.redispatch_stranded(silent=timedelta(0)) == 0
        assert sent == []


class TestRedispatch:
    def test_a_request_whose_heartbeat_stopped_a_minute_ago_is_sent_again(
        self, acme, operator, admin, sent, django_capture_on_commit_callbacks
    ):
        request, _ = running(acme, operator, admin)
        # Started 90 s ago: the old rule (no activity for 15 minutes) would wait 13 more.
        silent_for(request, 90, started_at=timezone.now() - timedelta(seconds=90))

        with django_capture_on_commit_callbacks(execute=True):
            assert execution.redispatch_stranded() == 1

        assert sent == [request.pk]
        event = request.events.get(verb="execution.redispatched")
        assert event.data["status"] == "in_progress"
        assert 90 <= event.data["silent_seconds"] < 100
        # The re-sent run gets a whole minute to start beating before the next re-send.
        assert execution.redispatch_stranded() == 0
        request.refresh_from_db()
        assert timezone.now() - request.heartbeat_at < timedelta(seconds=5)

    @pytest.mark.parametrize("seconds", [0, 30, 59])
    def test_a_request_that_beat_within_the_minute_is_left_alone(
        self, acme, operator, admin, sent, seconds
    ):
        request, _ = running(acme, operator, admin)
        # Even started hours ago: a long run that beats is a run in good health.
        silent_for(request, seconds, started_at=timezone.now() - timedelta(hours=3))

        assert execution.redispatch_stranded() == 0
        assert sent == []

    def test_the_timeout_comes_from_the_settings_and_the_command(
        self, acme, operator, admin, sent, settings, django_capture_on_commit_callbacks
    ):
        request, _ = running(acme, operator, admin)
        silent_for(request, 20)
        assert execution.redispatch_stranded() == 0
        settings.EXECUTION_HEARTBEAT_TIMEOUT = 15
        with django_capture_on_commit_callbacks(execute=True):
            assert tasks.dispatch_stranded.apply().get() == 1

        silent_for(request, 20)
        call_command("dispatch_stranded", "--silent", "30")
        with django_capture_on_commit_callbacks(execute=True):
            call_command("dispatch_stranded", "--silent", "10")
        assert sent == [request.pk, request.pk]

    def test_each_targets_effect_happens_once_when_the_silent_worker_was_only_slow(
        self, acme, operator, admin, django_capture_on_commit_callbacks
    ):
        """The first worker finished a target, went silent, and comes back after the re-send."""
        request, job = running(acme, operator, admin, endpoints=("ws-1", "ws-2", "ws-3"))
        first_run = SimulatedExecutor(delay=0).execute(job)
        result = next(first_run)
        execution.finish_target(result.target_id, succeeded=result.succeeded)
        silent_for(request, 120)

        with django_capture_on_commit_callbacks(execute=True):
            assert execution.redispatch_stranded() == 1  # runs the rest in-process
        for late in first_run:  # the slow worker wakes up and finishes its job
            assert execution.finish_target(late.target_id, succeeded=late.succeeded) is False
        execution.finish_execution(request.pk)

        request.refresh_from_db()
        assert request.status == RequestStatus.SUCCESSFUL
        calls = request.calls.values_list("target__value", "outcome")
        effects = sorted(value for value, outcome in calls if outcome == "succeeded")
        assert effects == ["ws-1", "ws-2", "ws-3"]
        assert sorted(value for value, outcome in calls if outcome == "duplicate") == [
            "ws-2",
            "ws-3",
        ]


class TestSettings:
    @pytest.mark.parametrize(
        "interval,timeout", [("30", "60"), ("0", "60"), ("-5", "60"), ("10", "29.9")]
    )
    def test_a_timeout_shorter_than_three_beats_is_refused(self, interval, timeout):
        result = load_settings(
            DEBUG="true",
            EXECUTION_HEARTBEAT_INTERVAL=interval,
            EXECUTION_HEARTBEAT_TIMEOUT=timeout,
        )
        assert result.returncode != 0
        assert "do not fit: expected a positive interval and a timeout of at least" in (
            result.stderr
        )

    @pytest.mark.parametrize(
        "value", ["ten", "nan", "inf", "1e999", "1_0", "10\u200b", "１０", "0x10"]
    )
    def test_a_malformed_number_is_named(self, value):
        result = load_settings(DEBUG="true", EXECUTION_HEARTBEAT_INTERVAL=value)
        assert result.returncode != 0
        assert f"EXECUTION_HEARTBEAT_INTERVAL={value!r} is not a number" in result.stderr

    def test_fractions_of_a_second_are_accepted(self):
        result = load_settings(
            DEBUG="true", EXECUTION_HEARTBEAT_INTERVAL="0.5", EXECUTION_HEARTBEAT_TIMEOUT="1.5"
        )
        assert result.returncode == 0, result.stderr

    def test_the_defaults_resume_within_two_minutes(self, settings):
        assert settings.EXECUTION_HEARTBEAT_INTERVAL == 10
        assert settings.EXECUTION_HEARTBEAT_TIMEOUT == 60
        beat_period = settings.CELERY_BEAT_SCHEDULE["redispatch-stranded-requests"]["schedule"]
        assert settings.EXECUTION_HEARTBEAT_TIMEOUT + beat_period <= 120


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_a_worker_beats_from_a_thread_while_the_executor_works(
    requires_postgresql, acme, operator, admin, settings, monkeypatch
):
    if not ResponseAction.objects.exists():
        sync_catalog()  # a transactional test's flush empties the catalog
    settings.EXECUTION_HEARTBEAT_INTERVAL = 0.1
    request = submit(acme, operator)
    monkeypatch.setattr(execution, "send", lambda pk: None)  # run below, as a worker would
    services.approve_request(request.pk, actor=admin)
    seen = []

    class Slow:
        """One target that takes a second, watching the request's heartbeat meanwhile."""

        def execute(self, job):
            for _ in range(10):
                time.sleep(0.1)
                seen.append(ActionRequest.objects.get(pk=job.request_id).heartbeat_at)
            yield TargetResult(job.targets[0].id, True, "done")

    def work():
        try:
            tasks.execute_request.run(request.pk)
        finally:
            connection.close()

    monkeypatch.setattr(tasks, "get_executor", Slow)
    worker = threading.Thread(target=work)
    worker.start()
    worker.join(timeout=30)
    sync_catalog()

    request.refresh_from_db()
    assert request.status == RequestStatus.SUCCESSFUL
    assert len(set(seen)) >= 5  # the heartbeat moved while the one target ran

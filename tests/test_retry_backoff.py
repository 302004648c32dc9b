"""A service that is down is asked again after longer and longer waits, not hammered."""

import celery.utils.time
import pytest
from celery.exceptions import Retry

from approvals import notifications, services
from approvals.execution import steps as execution
from approvals.execution import tasks
from approvals.execution.executors import TransientExecutorError
from approvals.models import RequestStatus

from .approvals_helpers import submit

pytestmark = pytest.mark.django_db


class AlwaysUnavailable:
    name = "unavailable"

    def execute(self, job):
        raise TransientExecutorError("The executor answered HTTP 503; the call will be retried.")
        yield  # a generator, like the real executors


class LongestJitter:
    """Celery's full jitter picks a wait in [0, backoff]; this one always picks the longest."""

    @staticmethod
    def randrange(stop):
        return stop - 1


@pytest.fixture
def asked_countdowns(monkeypatch):
    """The countdown each retry of a task asks Celery for, in order."""

    def spy_on(task):
        asked = []
        real_retry = task.retry

        def retry(*args, **kwargs):
            asked.append(kwargs.get("countdown"))
            return real_retry(*args, **kwargs)

        monkeypatch.setattr(task, "retry", retry)
        return asked

    return spy_on


def test_execution_retries_wait_twice_as_long_each_time(
    acme, operator, admin, monkeypatch, asked_countdowns
):
    monkeypatch.setattr(tasks, "get_executor", AlwaysUnavailable)
    monkeypatch.setattr(celery.utils.time, "random", LongestJitter)
    request = submit(acme, operator)
    services.approve_request(request.pk, actor=admin)
    execution.queue_request(request.pk)
    asked = asked_countdowns(tasks.execute_request)

    tasks.execute_request.apply(args=[request.pk])

    # retry_backoff=5: 5 s after the first failure, then 10, 20, 40 and 80; then it gives up.
    assert asked == [5, 10, 20, 40, 80]
    request.refresh_from_db()
    assert request.status == RequestStatus.FAILED


def test_execution_retries_never_wait_longer_than_the_backoff(
    acme, operator, admin, monkeypatch, asked_countdowns
):
    monkeypatch.setattr(tasks, "get_executor", AlwaysUnavailable)
    request = submit(acme, operator)
    services.approve_request(request.pk, actor=admin)
    execution.queue_request(request.pk)
    asked = asked_countdowns(tasks.execute_request)

    tasks.execute_request.apply(args=[request.pk])

    assert len(asked) == tasks.MAX_RETRIES
    for retries, countdown in enumerate(asked):
        assert 0 <= countdown <= 5 * 2**retries


@pytest.mark.parametrize(
    "task,failing",
    [
        (tasks.send_notification, "send"),
        (tasks.send_webhook_notification, "send_webhook"),
    ],
)
def test_notification_retries_wait_twice_as_long_each_time(monkeypatch, task, failing):
    def down(kind, request_id):
        raise ConnectionRefusedError("[Errno 111] Connection refused")

    monkeypatch.setattr(notifications, failing, down)
    asked = []

    def retry(*, exc, countdown):
        asked.append(countdown)
        return Retry(exc=exc, when=countdown)

    monkeypatch.setattr(task, "retry", retry)
    for retries in range(task.max_retries):
        task.push_request(retries=retries, is_eager=False, called_directly=False)
        try:
            with pytest.raises(Retry):
                task.run("pending", 1)
        finally:
            task.pop_request()

    # After the third retry the failure is logged and the task gives up.
    task.push_request(retries=task.max_retries, is_eager=False, called_directly=False)
    try:
        task.run("pending", 1)
    finally:
        task.pop_request()

    assert asked == [60, 120, 240]

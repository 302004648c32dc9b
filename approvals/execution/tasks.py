"""Celery tasks. They take primary keys and call the service functions; nothing else.

Each task keeps the name it had when this module was `approvals/tasks.py`: queued messages
and the beat schedule carry names, so messages in flight during an upgrade still find their task.

`execute_request` is safe to deliver twice: a finished request is left alone, a request in
progress continues with its unfinished targets only, and the executor gets the request's UUID
as idempotency key, so each target's effect happens once. Late acknowledgement (settings)
puts the message back on the queue when a worker dies in the middle.

In a worker whose executor takes several jobs at once, the task that starts a queued request
takes other queued requests with it (`EXECUTION_BATCH_SIZE`, see `batch_size`) and runs them as
one batch (`run_batch`); the tasks of those requests,
delivered later, find them another task's and do nothing. Should the worker die, each request
of the batch falls silent and `dispatch_stranded` sends it again, alone.
"""

import contextlib
import logging
from datetime import timedelta

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings
from django.utils import timezone

from .. import break_glass, digests, notifications, reminders, services
from ..models import TargetStatus
from . import steps as execution
from .executors import (
    ExecutorNotConfigured,
    Job,
    TargetResult,
    TransientExecutorError,
    get_executor,
)
from .heartbeat import Heartbeat

logger = logging.getLogger(__name__)

MAX_RETRIES = 5


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(TransientExecutorError,),
    retry_backoff=5,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=MAX_RETRIES,
    name="approvals.tasks.execute_request",
)
def execute_request(self, request_id: int) -> str:
    jobs = execution.start_executions(
        request_id, runner=self.request.id, batch_size=batch_size(self)
    )
    if not jobs:
        return "nothing to do"
    if len(jobs) > 1:
        return run_batch(jobs)
    try:
        with heartbeat(self, request_id):
            executor = get_executor()
            for result in executor.execute(jobs[0]):
                execution.finish_target(
                    result.target_id,
                    succeeded=result.succeeded,
                    message=result.message,
                    # The heartbeat's thread marks the request alive meanwhile; in-process,
                    # each result does.
                    heartbeat=bool(self.request.is_eager),
                )
    except TransientExecutorError as error:
        if self.request.retries < MAX_RETRIES:
            # The retry waits in this worker: until it is due, the request is not stranded.
            execution.beat(request_id, at=timezone.now() + longest_wait_before(self))
            raise
        execution.finish_execution(
            request_id,
            message=f"Gave up after {self.request.retries + 1} attempts: {error}",
        )
        return "gave up"
    except ExecutorNotConfigured as error:
        execution.finish_execution(request_id, message=f"The executor is not configured: {error}")
        return "not configured"
    except SoftTimeLimitExceeded:
        execution.finish_execution(
            request_id,
            unfinished=TargetStatus.TERMINATED,
            message=STOPPED,
        )
        return "terminated"
    return execution.finish_execution(request_id).status


def batch_size(task) -> int:
    """How many queued requests the task may start at once: EXECUTION_BATCH_SIZE in a worker
    whose executor takes several jobs at once (`execute_many`), otherwise its own request alone.

    Outside a worker (in-process, or `run` called directly), claiming others would make the web
    request that started it wait for them; and an executor that runs jobs one after another
    would make the last of a batch wait for the others while another worker sits idle.
    """
    if task.request.is_eager or task.request.id is None:
        return 1
    try:
        executor = get_executor()
    except ExecutorNotConfigured:
        return 1  # the task finishes its request with the reason
    return settings.EXECUTION_BATCH_SIZE if hasattr(executor, "execute_many") else 1


STOPPED = "Stopped: the execution took longer than its time limit."
# The wait before a request of a batch whose executor said "not now" is tried again alone.
BATCH_RETRY_AFTER = timedelta(seconds=5)


def run_batch(jobs: list[Job]) -> str:
    """Run the jobs of requests started together and finish them together.

    An executor with `execute_many` takes every job at once; another runs them one by one.
    The results are kept until the end, when one transaction records them all and finishes
    the requests; a worker lost meanwhile leaves the requests in progress, silent, and each is
    then sent again alone (`dispatch_stranded`), the executor's idempotency key keeping each
    target's effect to one. A request whose executor says "not now" is tried again alone.
    """
    ids = [job.request_id for job in jobs]
    results: list[TargetResult] = []
    later: dict[int, list[TargetResult]] = {}
    try:
        with Heartbeat(
            lambda: execution.beat_all(ids), interval=settings.EXECUTION_HEARTBEAT_INTERVAL
        ):
            executor = get_executor()
            if hasattr(executor, "execute_many"):
                results.extend(executor.execute_many(jobs))
            else:
                for job in jobs:
                    got: list[TargetResult] = []
                    try:
                        for result in executor.execute(job):
                            got.append(result)
                    except TransientExecutorError:
                        later[job.request_id] = got
                    else:
                        results.extend(got)
    except ExecutorNotConfigured as error:
        execution.finish_executions(ids, message=f"The executor is not configured: {error}")
        return "not configured"
    except SoftTimeLimitExceeded:
        execution.finish_executions(
            ids, results, unfinished=TargetStatus.TERMINATED, message=STOPPED
        )
        return "terminated"
    finished = execution.finish_executions([pk for pk in ids if pk not in later], results)
    if later:
        execution.retry_alone(
            later, [result for got in later.values() for result in got], BATCH_RETRY_AFTER
        )
    return f"{len(finished)} finished, {len(later)} to retry, of a batch of {len(jobs)}"


def heartbeat(task, request_id: int):
    """The request's heartbeat while its executor works, from a thread of this worker.

    Not in-process (no broker, `task_always_eager`): the run belongs to the web request that
    started it, each finished target is its heartbeat, and SQLite would make a second writer
    wait.
    """
    if task.request.is_eager:
        return contextlib.nullcontext()
    return Heartbeat(
        lambda: execution.beat(request_id), interval=settings.EXECUTION_HEARTBEAT_INTERVAL
    )


def longest_wait_before(task) -> timedelta:
    """The longest Celery may wait before the next retry (the backoff without its jitter)."""
    return timedelta(
        seconds=get_exponential_backoff_interval(
            factor=task.retry_backoff,
            retries=task.request.retries,
            maximum=task.retry_backoff_max,
            full_jitter=False,
        )
    )


@shared_task(
    ignore_result=True,
    soft_time_limit=60,
    time_limit=90,
    name="approvals.tasks.deliver_notification",
)
def deliver_notification(notification_id: int) -> bool:
    """Deliver one notification of the outbox right after its change committed."""
    return notifications.deliver(notification_id)


@shared_task(ignore_result=True, name="approvals.tasks.deliver_notifications")
def deliver_notifications() -> int:
    """Deliver whatever the outbox still holds (beat, every minute)."""
    return notifications.deliver_due()


@shared_task(
    ignore_result=True,
    soft_time_limit=120,
    time_limit=150,
    name="approvals.tasks.deliver_webhooks",
)
def deliver_webhooks() -> int:
    """Deliver, together, the webhook notices of notifications whose e-mail waits for a digest."""
    return notifications.deliver_webhook_batch()


@shared_task(ignore_result=True, name="approvals.tasks.send_digests")
def send_digests() -> int:
    """Send the digests whose interval is over (beat, every minute)."""
    return digests.send_due_digests()


# The two tasks below deliver notifications queued before the outbox existed (messages in
# flight during an upgrade); new notifications go through `deliver_notification`.
@shared_task(
    bind=True,
    max_retries=3,
    ignore_result=True,
    soft_time_limit=60,
    time_limit=90,
    name="approvals.tasks.send_notification",
)
def send_notification(self, kind: str, request_id: int) -> int:
    try:
        return notifications.send(kind, request_id)
    except Exception as error:
        if not self.request.is_eager and self.request.retries < self.max_retries:
            raise self.retry(exc=error, countdown=60 * 2**self.request.retries) from error
        logger.exception("The %s e-mail about request %s could not be sent.", kind, request_id)
        return 0


@shared_task(
    bind=True,
    max_retries=3,
    ignore_result=True,
    soft_time_limit=60,
    time_limit=90,
    name="approvals.tasks.send_webhook_notification",
)
def send_webhook_notification(self, kind: str, request_id: int) -> int | None:
    try:
        return notifications.send_webhook(kind, request_id)
    except Exception as error:
        if not self.request.is_eager and self.request.retries < self.max_retries:
            raise self.retry(exc=error, countdown=60 * 2**self.request.retries) from error
        logger.exception("The %s webhook notice about request %s failed.", kind, request_id)
        return None


@shared_task(ignore_result=True, name="approvals.tasks.expire_requests")
def expire_requests() -> int:
    return services.expire_overdue_requests()


@shared_task(ignore_result=True, name="approvals.tasks.send_reminders")
def send_reminders() -> int:
    return reminders.send_due_reminders()


@shared_task(ignore_result=True, name="approvals.tasks.announce_overdue_reviews")
def announce_overdue_reviews() -> int:
    return break_glass.announce_overdue_reviews()


@shared_task(ignore_result=True, name="approvals.tasks.end_expired_sessions")
def end_expired_sessions() -> int:
    return execution.expire_remote_shells()


@shared_task(ignore_result=True, name="approvals.tasks.dispatch_stranded")
def dispatch_stranded() -> int:
    return execution.redispatch_stranded()

"""Executors: what actually runs an approved request's action on its targets.

`settings.RESPONSE_EXECUTOR` chooses one:

- `simulated` (demos and tests) takes `SIMULATED_EXECUTOR_DELAY` seconds per target, fails
  targets whose value starts with `fail-`, and records every call in `ExecutorCall`, so a
  duplicate delivery is visible and has no second effect.
- `webhook` POSTs the job as JSON to `EXECUTOR_WEBHOOK_URL`, signed with HMAC-SHA256 of the
  body under `EXECUTOR_WEBHOOK_SECRET` in `X-Response-Portal-Signature: sha256=<hex>`.

An executor gets a `Job` and yields one `TargetResult` per target, as each finishes. A
`TransientExecutorError` means "try again later" (the task retries it with backoff); any
other outcome is final. An executor may also take several requests' jobs at once
(`execute_many`, for a worker's batch); one without it is given them one by one.
"""

import http.client
import json
import logging
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction

from responseportal.http import OPENER, SIGNATURE_HEADER, sign

from ..models import ExecutorCall, RequestTarget

logger = logging.getLogger(__name__)

FAILING_PREFIX = "fail-"
# A reply this large is not a list of per-target results.
MAX_REPLY_BYTES = 1_000_000
# Status codes that say "not now" rather than "no".
TRANSIENT_CLIENT_ERRORS = {408, 425, 429}


class TransientExecutorError(Exception):
    """The executor could not be reached or is unavailable for now: try again later."""


class ExecutorNotConfigured(Exception):
    """The chosen executor lacks a setting; no target can run until an operator fixes it."""


@dataclass(frozen=True)
class JobTarget:
    id: int
    position: int
    kind: str
    value: str


@dataclass(frozen=True)
class Job:
    """One request's action to run on its unfinished targets."""

    request_id: int
    idempotency_key: uuid.UUID
    action: str
    parameters: dict
    targets: list[JobTarget]
    organization: str = ""


@dataclass(frozen=True)
class TargetResult:
    target_id: int
    succeeded: bool
    message: str = ""


class SimulatedExecutor:
    """Behaves like a real executor: it takes time, fails some targets, remembers every call."""

    name = "simulated"

    def __init__(self, delay: float | None = None):
        self.delay = settings.SIMULATED_EXECUTOR_DELAY if delay is None else delay

    def execute(self, job: Job) -> Iterator[TargetResult]:
        for target in job.targets:
            # Computed in its own transaction, yielded after it commits: the caller's work on
            # the result never runs inside this executor's lock.
            yield self._run_once(job, target)

    def execute_many(self, jobs: list[Job]) -> Iterator[TargetResult]:
        """Several requests' jobs. With a delay, time passes between the effects, as with a
        real executor: each is recorded as it happens. Without one, all in one transaction."""
        if self.delay:
            for job in jobs:
                yield from self.execute(job)
            return
        yield from self._run_all_once(jobs)

    def _run_all_once(self, jobs: list[Job]) -> list[TargetResult]:
        by_target = {target.id: (job, target) for job in jobs for target in job.targets}
        with transaction.atomic():
            # As `_run_once`, for every target at once (in the order of their ids).
            list(
                RequestTarget.objects.select_for_update()
                .filter(pk__in=by_target)
                .order_by("pk")
                .values_list("pk", flat=True)
            )
            done: dict[tuple, ExecutorCall] = {}
            for call in ExecutorCall.objects.filter(
                idempotency_key__in={job.idempotency_key for job in jobs},
                target_id__in=by_target,
                outcome__in=["succeeded", "failed"],
            ).order_by("id"):
                done.setdefault((call.idempotency_key, call.target_id), call)
            calls, results = [], []
            for job, target in by_target.values():
                call = self._call(job, target, done.get((job.idempotency_key, target.id)))
                calls.append(call)
                first = done.get((job.idempotency_key, target.id)) or call
                results.append(TargetResult(target.id, first.outcome == "succeeded", first.detail))
            ExecutorCall.objects.bulk_create(calls)
        return results

    def _call(self, job: Job, target: JobTarget, done: ExecutorCall | None) -> ExecutorCall:
        """The record of a call on `target`: a duplicate of `done`, or the (instant) effect."""
        if done is not None:
            outcome = "duplicate"
            detail = f"Already {done.outcome} at {done.called_at.isoformat()}: not run again."
        else:
            succeeded = not target.value.lower().startswith(FAILING_PREFIX)
            outcome = "succeeded" if succeeded else "failed"
            detail = (
                f"Simulated {job.action} on {target.value}."
                if succeeded
                else f"Simulated failure: {target.value} did not answer."
            )
        return ExecutorCall(
            request_id=job.request_id,
            target_id=target.id,
            executor=self.name,
            idempotency_key=job.idempotency_key,
            outcome=outcome,
            detail=detail,
        )

    def _run_once(self, job: Job, target: JobTarget) -> TargetResult:
        with transaction.atomic():
            # Two deliveries of one request at once: the second waits here, then finds the
            # first one's effect and does nothing.
            RequestTarget.objects.select_for_update().filter(pk=target.id).first()
            done = (
                ExecutorCall.objects.filter(
                    idempotency_key=job.idempotency_key,
                    target_id=target.id,
                    outcome__in=["succeeded", "failed"],
                )
                .order_by("id")
                .first()
            )
            if done is None and self.delay:
                time.sleep(self.delay)
            call = self._call(job, target, done)
            call.save()
            first = done or call
            return TargetResult(target.id, first.outcome == "succeeded", first.detail)


class WebhookExecutor:
    """POSTs the job to the provider's own automation and reads per-target results back.

    Request body: `{"action", "parameters", "targets": [{"position", "kind", "value"}],
    "idempotency_key", "request": {"uuid", "organization"}}`. Expected reply (2xx):
    `{"results": [{"target": <value> or "position": <n>, "status": "successful" | "failed",
    "message": "..."}]}`. A 5xx, 408, 425, 429, a timeout or a refused connection is
    transient; any other 4xx fails every target with the reply's text.
    """

    name = "webhook"

    def __init__(self, url: str | None = None, secret: str | None = None, timeout=None):
        self.url = settings.EXECUTOR_WEBHOOK_URL if url is None else url
        self.secret = settings.EXECUTOR_WEBHOOK_SECRET if secret is None else secret
        self.timeout = settings.EXECUTOR_WEBHOOK_TIMEOUT if timeout is None else timeout
        if urlsplit(self.url).scheme not in {"http", "https"}:
            raise ExecutorNotConfigured(
                "EXECUTOR_WEBHOOK_URL must be an http:// or https:// URL of the automation "
                "that runs response actions."
            )
        if not self.secret:
            raise ExecutorNotConfigured(
                "EXECUTOR_WEBHOOK_SECRET is not set: the webhook executor signs every call "
                "with it, so the automation can tell the portal's calls from anyone else's."
            )

    def payload(self, job: Job) -> bytes:
        return json.dumps(
            {
                "action": job.action,
                "parameters": job.parameters,
                "targets": [
                    {"position": t.position, "kind": t.kind, "value": t.value} for t in job.targets
                ],
                "idempotency_key": str(job.idempotency_key),
                "request": {"uuid": str(job.idempotency_key), "organization": job.organization},
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()

    def execute(self, job: Job) -> Iterator[TargetResult]:
        body = self.payload(job)
        try:
            status, reply = self._post(body, job.idempotency_key)
        except TransientExecutorError as error:
            self._record(job, "transient", str(error))
            raise
        refused = not 200 <= status < 300
        self._record(job, "refused" if refused else "ok", f"HTTP {status}")
        if refused:
            text = reply.decode(errors="replace").strip()[:500]
            message = f"The executor refused the request (HTTP {status})" + (
                f": {text}" if text else "."
            )
            yield from (TargetResult(t.id, False, message) for t in job.targets)
            return
        yield from self._results(job, reply)

    def _post(self, body: bytes, key: uuid.UUID) -> tuple[int, bytes]:
        request = urllib.request.Request(  # noqa: S310 (the scheme is checked in __init__)
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "Response Portal",
                "Idempotency-Key": str(key),
                SIGNATURE_HEADER: sign(body, self.secret),
            },
        )
        try:
            with OPENER.open(request, timeout=self.timeout) as response:
                return response.status, response.read(MAX_REPLY_BYTES)
        except urllib.error.HTTPError as error:
            if error.code >= 500 or error.code in TRANSIENT_CLIENT_ERRORS:
                raise TransientExecutorError(
                    f"The executor answered HTTP {error.code}; the call will be retried."
                ) from error
            return error.code, error.read(MAX_REPLY_BYTES)
        except TimeoutError as error:
            raise TransientExecutorError(
                f"The executor did not answer within {self.timeout:g} s; the call will be retried."
            ) from error
        except urllib.error.URLError as error:
            raise TransientExecutorError(
                f"The executor could not be reached ({error.reason}); the call will be retried."
            ) from error
        except (ConnectionError, http.client.HTTPException) as error:
            raise TransientExecutorError(
                f"The connection to the executor failed ({error!r}); the call will be retried."
            ) from error

    def _results(self, job: Job, reply: bytes) -> Iterator[TargetResult]:
        try:
            results = json.loads(reply)["results"]
            if not isinstance(results, list):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            message = 'The executor\'s reply was not JSON with a "results" list.'
            yield from (TargetResult(t.id, False, message) for t in job.targets)
            return
        by_position = {t.position: t for t in job.targets}
        by_value = {t.value: t for t in job.targets}
        answered: dict[int, TargetResult] = {}
        for item in results:
            if not isinstance(item, dict):
                continue
            target = by_position.get(item.get("position")) or by_value.get(item.get("target"))
            if target is None or target.id in answered:
                continue
            status = item.get("status")
            message = str(item.get("message", ""))[:2000]
            if status not in {"successful", "failed"}:
                answered[target.id] = TargetResult(
                    target.id, False, f"The executor gave an unknown status `{str(status)[:40]}`."
                )
            else:
                answered[target.id] = TargetResult(target.id, status == "successful", message)
        for target in job.targets:
            yield answered.get(
                target.id,
                TargetResult(target.id, False, "The executor gave no result for this target."),
            )

    def _record(self, job: Job, outcome: str, detail: str) -> None:
        ExecutorCall.objects.create(
            request_id=job.request_id,
            executor=self.name,
            idempotency_key=job.idempotency_key,
            outcome=outcome,
            detail=detail[:2000],
        )


EXECUTORS = {"simulated": SimulatedExecutor, "webhook": WebhookExecutor}


def get_executor(name: str | None = None):
    """The executor `settings.RESPONSE_EXECUTOR` names (or `name`)."""
    name = name or settings.RESPONSE_EXECUTOR
    if name not in EXECUTORS:
        raise ExecutorNotConfigured(
            f"RESPONSE_EXECUTOR={name!r} is not an executor: expected one of "
            f"{', '.join(sorted(EXECUTORS))}."
        )
    return EXECUTORS[name]()

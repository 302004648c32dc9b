"""Requests made through the service layer, for tests that start from an existing request,
and periodic runs started at the same instant."""

import threading
from collections.abc import Callable
from typing import TypeVar

from django.db import connection

from actions.models import ResponseAction
from approvals import services
from approvals.models import ApprovalSettings


def submit(organization, actor, key="isolate_endpoint", endpoints=("web-01.acme.test",), **kw):
    parameters = kw.pop("parameters", {"endpoints": list(endpoints), "description": "Beaconing"})
    return services.submit_request(
        organization,
        ResponseAction.objects.get(key=key),
        actor=actor,
        parameters=parameters,
        targets=[services.Target("endpoint", endpoint) for endpoint in endpoints],
        endpoints=list(endpoints),
        summary=kw.pop("summary", "Beaconing " + " ".join(endpoints)),
        **kw,
    )


def turn_on_auto_approval(organization, **changes):
    settings = ApprovalSettings.for_organization(organization)
    settings.auto_approval_enabled = True
    for name, value in changes.items():
        setattr(settings, name, value)
    settings.save()
    return settings


T = TypeVar("T")


def at_once(run: Callable[[], T], *, runs: int = 4) -> list[T]:
    """What `run()` returned in each of `runs` threads released together, as beat runs that
    overlap (each thread has its own database connection). An exception raised in any run
    is raised here, once all have ended; a run still going after a minute is left out."""
    start = threading.Barrier(runs)
    results: list[T] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            start.wait()
            results.append(run())
        except BaseException as error:  # noqa: BLE001 (raised below)
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=one) for _ in range(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    if errors:
        raise errors[0]
    return results

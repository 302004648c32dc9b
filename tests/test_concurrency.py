"""Two admins deciding the same request at once: exactly one decision wins (PostgreSQL)."""

import threading

import pytest
from django.db import connection

from approvals import services
from approvals.models import RequestStatus
from audit.models import AuditEvent
from responseportal.models import Role

from .approvals_helpers import submit
from .factories import MembershipFactory, UserFactory

pytestmark = [pytest.mark.postgresql, pytest.mark.django_db(transaction=True)]


def test_twenty_admins_deciding_at_once_make_one_decision(requires_postgresql, acme, operator):
    admins = [UserFactory(username=f"admin-{n}") for n in range(20)]
    for admin in admins:
        MembershipFactory(user=admin, organization=acme, role=Role.ADMIN)
    request = submit(acme, operator)
    start = threading.Barrier(len(admins))
    outcomes: list[str] = []

    def decide(n: int, admin) -> None:
        try:
            start.wait()
            if n % 2:
                services.approve_request(request.pk, actor=admin)
                outcomes.append("approved")
            else:
                services.reject_request(request.pk, actor=admin, reason=f"no ({n})")
                outcomes.append("rejected")
        except services.TransitionRefused as refusal:
            assert "already" in refusal.message
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=decide, args=(n, a)) for n, a in enumerate(admins)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(outcomes) == 20
    assert outcomes.count("refused") == 19
    request.refresh_from_db()
    winner = next(outcome for outcome in outcomes if outcome != "refused")
    # An approved request goes on to run at once (tasks run in-process in the tests).
    expected = {"approved": RequestStatus.SUCCESSFUL, "rejected": RequestStatus.REJECTED}[winner]
    assert request.status == expected
    decisions = AuditEvent.objects.filter(
        request=request, verb__in=["request.approved", "request.rejected"]
    )
    assert decisions.count() == 1
    assert decisions.get().actor == request.decided_by

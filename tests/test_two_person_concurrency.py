"""Twenty admins approving a two-person request at once (PostgreSQL): exactly two approvals
count, the request is approved once and runs once."""

import threading

import pytest
from django.db import connection

from approvals import services
from approvals.models import ApprovalSettings, ExecutorCall, RequestStatus
from audit.models import AuditEvent
from responseportal.models import Role

from .approvals_helpers import submit
from .factories import MembershipFactory, UserFactory

pytestmark = [pytest.mark.postgresql, pytest.mark.django_db(transaction=True)]


def test_twenty_admins_approving_at_once_count_two_and_run_it_once(
    requires_postgresql, acme, operator
):
    admins = [UserFactory(username=f"admin-{n}") for n in range(20)]
    for admin in admins:
        MembershipFactory(user=admin, organization=acme, role=Role.ADMIN)
    ApprovalSettings.objects.create(organization=acme, approvals_needed={"isolate_endpoint": 2})
    action_request = submit(acme, operator, endpoints=["ws-1.acme.test", "ws-2.acme.test"])
    assert action_request.approvals_needed == 2
    start = threading.Barrier(len(admins))
    outcomes: dict[str, str] = {}

    def approve(admin) -> None:
        try:
            start.wait()
            services.approve_request(action_request.pk, actor=admin)
            outcomes[admin.username] = "counted"
        except services.TransitionRefused as refusal:
            outcomes[admin.username] = refusal.message
        finally:
            connection.close()

    threads = [threading.Thread(target=approve, args=(admin,)) for admin in admins]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert len(outcomes) == 20
    counted = sorted(name for name, outcome in outcomes.items() if outcome == "counted")
    assert len(counted) == 2
    refusals = [outcome for outcome in outcomes.values() if outcome != "counted"]
    assert all(refusal.startswith("This request was already approved by") for refusal in refusals)
    action_request.refresh_from_db()
    assert action_request.status == RequestStatus.SUCCESSFUL
    assert sorted(action_request.approvals.values_list("admin__username", flat=True)) == counted
    events = AuditEvent.objects.filter(request=action_request)
    assert events.filter(verb="request.approval_added").count() == 1
    approved = events.get(verb="request.approved")
    assert approved.actor == action_request.decided_by
    assert action_request.decided_by.username in counted
    # One execution: each of the two targets called once, under the request's idempotency key.
    calls = ExecutorCall.objects.filter(request=action_request)
    assert calls.count() == 2
    assert set(calls.values_list("idempotency_key", flat=True)) == {action_request.uuid}

"""Undo: a successful Isolate Endpoint is reversed by a Restore Connection request, filled in
with the endpoints still isolated, linked to it, and approved like any other request."""

import pytest
from django.urls import reverse

from actions.catalog import BY_KEY, REVERSALS
from approvals import services, undo
from approvals.models import ActionRequest, ApprovalMode, RequestStatus, TargetStatus
from approvals.state import isolated_endpoints
from audit.models import AuditEvent

from .approvals_helpers import at_once, submit, turn_on_auto_approval
from .conftest import client_for

pytestmark = pytest.mark.django_db


def ran(organization, operator, endpoints, key="isolate_endpoint", capture=None):
    """A request that ran through the real executor (simulated: `fail-…` targets fail)."""
    turn_on_auto_approval(organization, auto_approved_actions=[key])
    with capture(execute=True):
        done = submit(organization, operator, key=key, endpoints=endpoints)
    done.refresh_from_db()
    return done


@pytest.fixture
def isolation(acme, operator, django_capture_on_commit_callbacks):
    done = ran(acme, operator, ["ws-1", "ws-2"], capture=django_capture_on_commit_callbacks)
    assert done.status == RequestStatus.SUCCESSFUL
    # From now on, a restore waits for an admin: the undo follows the approval rules.
    turn_on_auto_approval(acme, auto_approval_enabled=False)
    return done


def undo_url(action_request, slug="acme"):
    return reverse("request_undo", args=[slug, action_request.uuid])


def detail(action_request, slug="acme"):
    return reverse("request_detail", args=[slug, action_request.uuid])


def test_the_catalog_declares_isolation_undone_by_restore():
    reversal = REVERSALS["isolate_endpoint"]
    assert (reversal.undo, reversal.parameter, reversal.target_kind) == (
        "restore_connection",
        "endpoints",
        "endpoint",
    )
    for key, declared in REVERSALS.items():
        assert key in BY_KEY and declared.undo in BY_KEY


class TestService:
    def test_it_creates_a_linked_restore_that_waits_for_approval(self, acme, isolation, operator):
        created, new = undo.undo_request(isolation.pk, actor=operator)
        assert new
        assert created.action.key == "restore_connection"
        assert created.parameters == {"endpoints": ["ws-1", "ws-2"]}
        assert [t.value for t in created.targets.order_by("position")] == ["ws-1", "ws-2"]
        assert (created.approval_mode, created.status) == (
            ApprovalMode.MANUAL,
            RequestStatus.PENDING,
        )
        assert created.undoes == isolation
        assert list(isolation.undone_by.all()) == [created]
        assert str(isolation.uuid) in created.summary
        event = created.events.get(verb="request.submitted")
        assert (event.actor, event.data["undoes"]) == (operator, str(isolation.uuid))

    def test_approved_it_restores_the_endpoints(
        self, acme, isolation, operator, admin, django_capture_on_commit_callbacks
    ):
        created, _ = undo.undo_request(isolation.pk, actor=operator)
        with django_capture_on_commit_callbacks(execute=True):
            services.approve_request(created.pk, actor=admin)
        created.refresh_from_db()
        assert created.status == RequestStatus.SUCCESSFUL
        assert isolated_endpoints(acme, ["ws-1", "ws-2"]) == set()
        with pytest.raises(services.TransitionRefused) as refused:
            undo.undo_request(isolation.pk, actor=operator)
        assert refused.value.message.startswith("Nothing left to undo")

    def test_a_partial_isolation_undoes_only_the_endpoints_it_reached(
        self, acme, operator, django_capture_on_commit_callbacks
    ):
        partial = ran(
            acme, operator, ["ws-1", "fail-2", "ws-3"], capture=django_capture_on_commit_callbacks
        )
        assert partial.status == RequestStatus.PARTIALLY_SUCCESSFUL
        created, _ = undo.undo_request(partial.pk, actor=operator)
        assert created.parameters == {"endpoints": ["ws-1", "ws-3"]}

    def test_endpoints_restored_since_are_left_out(
        self, acme, isolation, operator, django_capture_on_commit_callbacks
    ):
        restored = ran(
            acme,
            operator,
            ["ws-2"],
            key="restore_connection",
            capture=django_capture_on_commit_callbacks,
        )
        assert restored.status == RequestStatus.SUCCESSFUL
        assert undo.undoable_targets(isolation) == ["ws-1"]
        created, _ = undo.undo_request(isolation.pk, actor=operator)
        assert created.parameters == {"endpoints": ["ws-1"]}

    def test_a_second_click_returns_the_undo_under_way(self, isolation, operator):
        first, _ = undo.undo_request(isolation.pk, actor=operator)
        second, new = undo.undo_request(isolation.pk, actor=operator)
        assert (second, new) == (first, False)
        assert ActionRequest.objects.filter(undoes=isolation).count() == 1

    @pytest.mark.parametrize("ending", ["rejected", "cancelled"])
    def test_after_an_undo_ended_without_running_a_new_one_can_be_made(
        self, isolation, operator, admin, ending
    ):
        first, _ = undo.undo_request(isolation.pk, actor=operator)
        if ending == "rejected":
            services.reject_request(first.pk, actor=admin, reason="Still infected.")
        else:
            services.cancel_request(first.pk, actor=operator)
        second, new = undo.undo_request(isolation.pk, actor=operator)
        assert new and second != first
        assert second.parameters == {"endpoints": ["ws-1", "ws-2"]}
        assert list(isolation.undone_by.order_by("id")) == [first, second]

    def test_an_action_without_a_reversal_is_refused_naming_those_with_one(
        self, acme, operator, django_capture_on_commit_callbacks
    ):
        scan = ran(
            acme,
            operator,
            ["ws-1"],
            key="scan_for_malware",
            capture=django_capture_on_commit_callbacks,
        )
        with pytest.raises(services.TransitionRefused) as refused:
            undo.undo_request(scan.pk, actor=operator)
        assert refused.value.message == (
            "Scan for Malware cannot be undone from the portal: only requests of "
            "Isolate Endpoint have an Undo."
        )
        assert not ActionRequest.objects.filter(undoes=scan).exists()

    @pytest.mark.parametrize("status", ["pending", "failed"])
    def test_a_request_that_did_not_succeed_is_refused(
        self, acme, operator, status, django_capture_on_commit_callbacks
    ):
        if status == "pending":
            original = submit(acme, operator)
        else:
            original = ran(acme, operator, ["fail-1"], capture=django_capture_on_commit_callbacks)
        assert original.status == status
        with pytest.raises(services.TransitionRefused) as refused:
            undo.undo_request(original.pk, actor=operator)
        assert "Only a successful or partially successful request can be undone" in (
            refused.value.message
        )
        assert ActionRequest.objects.count() == 1

    @pytest.mark.parametrize("who", ["admin", "auditor", "outsider"])
    def test_only_operators_undo(self, cast, isolation, who):
        with pytest.raises(services.PermissionDenied):
            undo.undo_request(isolation.pk, actor=cast[who])
        assert not isolation.undone_by.exists()

    def test_the_undo_follows_auto_approval_like_any_request(
        self, acme, isolation, operator, django_capture_on_commit_callbacks
    ):
        turn_on_auto_approval(acme, auto_approved_actions=["restore_connection"])
        with django_capture_on_commit_callbacks(execute=True):
            created, _ = undo.undo_request(isolation.pk, actor=operator)
        created.refresh_from_db()
        assert (created.approval_mode, created.status) == ("auto", RequestStatus.SUCCESSFUL)


class TestPages:
    def test_the_operator_sees_an_undo_button_and_lands_on_the_new_request(
        self, isolation, operator
    ):
        client = client_for(operator)
        page = client.get(detail(isolation)).content.decode()
        assert f'action="{undo_url(isolation)}"' in page
        response = client.post(undo_url(isolation))
        created = ActionRequest.objects.get(undoes=isolation)
        assert response.status_code == 302 and response["Location"] == detail(created)
        page = client.get(response["Location"]).content.decode()
        assert "undoes" in page and detail(isolation) in page
        original = client.get(detail(isolation)).content.decode()
        assert "undone by" in original and detail(created) in original
        # While the undo is under way, the original offers no second one.
        assert f'action="{undo_url(isolation)}"' not in original

    @pytest.mark.parametrize("who", ["admin", "auditor"])
    def test_no_undo_button_for_other_roles(self, cast, isolation, who):
        page = client_for(cast[who]).get(detail(isolation)).content.decode()
        assert undo_url(isolation) not in page

    def test_no_undo_button_on_a_pending_isolation(self, acme, operator):
        pending = submit(acme, operator)
        assert undo_url(pending) not in client_for(operator).get(detail(pending)).content.decode()

    @pytest.mark.parametrize(
        "who,status", [("operator", 302), ("admin", 403), ("auditor", 403), ("outsider", 404)]
    )
    def test_access(self, cast, isolation, who, status):
        assert client_for(cast[who]).post(undo_url(isolation)).status_code == status

    def test_get_is_not_allowed(self, isolation, operator):
        assert client_for(operator).get(undo_url(isolation)).status_code == 405

    def test_a_double_click_creates_one_request(self, isolation, operator):
        client = client_for(operator)
        first = client.post(undo_url(isolation))
        second = client.post(undo_url(isolation), follow=True)
        assert first["Location"] == second.redirect_chain[-1][0]
        assert "already being undone" in " ".join(str(m) for m in second.context["messages"])
        assert ActionRequest.objects.filter(undoes=isolation).count() == 1

    def test_a_refused_undo_says_why_and_stays_on_the_page(self, acme, operator):
        pending = submit(acme, operator)
        response = client_for(operator).post(undo_url(pending), follow=True)
        assert response.redirect_chain[-1][0] == detail(pending)
        assert "Only a successful or partially successful request" in " ".join(
            str(m) for m in response.context["messages"]
        )
        assert ActionRequest.objects.count() == 1

    def test_the_csrf_token_is_required(self, isolation, operator, csrf_client):
        csrf_client.force_login(operator)
        assert csrf_client.post(undo_url(isolation)).status_code == 403
        assert not isolation.undone_by.exists()


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_clicks_at_once_make_one_undo(requires_postgresql, acme, operator):
    original = submit(acme, operator, endpoints=["ws-1"])
    ActionRequest.objects.filter(pk=original.pk).update(status=RequestStatus.SUCCESSFUL)
    original.targets.update(status=TargetStatus.SUCCESSFUL, finished_at=original.submitted_at)

    outcomes = at_once(lambda: undo.undo_request(original.pk, actor=operator), runs=6)

    assert len(outcomes) == 6
    assert len({created.pk for created, _ in outcomes}) == 1
    assert sum(new for _, new in outcomes) == 1
    assert ActionRequest.objects.filter(undoes=original).count() == 1
    assert AuditEvent.objects.filter(verb="request.submitted").count() == 2

import uuid
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from approvals import services
from approvals.execution import steps as execution_steps
from approvals.models import ActionRequest, ApprovalMode, ApprovalSettings, RequestStatus
from audit.context import AuditContext
from audit.models import AuditEvent, Source
from responseportal.models import Membership, Role

from .approvals_helpers import submit, turn_on_auto_approval
from .factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

WEB = AuditContext(source=Source.WEB, ip_address="192.0.2.10", user_agent="pytest-browser")


def verbs(request):
    return list(request.events.order_by("id").values_list("verb", flat=True))


@pytest.fixture
def second_admin(acme):
    user = UserFactory(username="acme-admin-2")
    MembershipFactory(user=user, organization=acme, role=Role.ADMIN)
    return user


@pytest.fixture
def pending(acme, operator):
    return submit(acme, operator)


class TestSubmit:
    def test_it_waits_for_a_decision_with_auto_approval_off(self, acme, operator):
        before = timezone.now()
        request = submit(acme, operator, endpoints=["web-01.acme.test", "10.0.0.5"], context=WEB)
        assert request.status == RequestStatus.PENDING
        assert request.approval_mode == ApprovalMode.MANUAL
        assert before + timedelta(hours=72) <= request.expires_at
        assert request.expires_at <= timezone.now() + timedelta(hours=72)
        assert list(request.targets.values_list("value", flat=True)) == [
            "web-01.acme.test",
            "10.0.0.5",
        ]
        event = request.events.get()
        assert (event.verb, event.actor, event.actor_username, event.role) == (
            "request.submitted",
            operator,
            "operator",
            "operator",
        )
        assert (event.source, event.ip_address, event.user_agent) == (
            "web",
            "192.0.2.10",
            "pytest-browser",
        )
        assert event.data["approval_mode"] == "manual"
        assert event.action_key == "isolate_endpoint"

    def test_it_uses_the_organizations_pending_lifetime(self, acme, operator):
        settings = ApprovalSettings.for_organization(acme)
        settings.pending_lifetime_hours = 5
        settings.save()
        request = submit(acme, operator)
        assert request.expires_at - request.submitted_at == timedelta(hours=5)

    def test_it_runs_at_once_when_auto_approved(
        self, acme, operator, monkeypatch, django_capture_on_commit_callbacks
    ):
        turn_on_auto_approval(acme)
        sent = []
        monkeypatch.setattr(execution_steps, "send", sent.append)
        with django_capture_on_commit_callbacks(execute=True):
            request = submit(acme, operator)
            assert sent == []  # the workers hear of it only once it is committed
        stored = ActionRequest.objects.get(pk=request.pk)
        assert (stored.status, stored.approval_mode) == (RequestStatus.QUEUED, "auto")
        assert stored.expires_at is None and stored.queued_at is not None
        assert verbs(request) == ["request.submitted", "request.auto_approved", "execution.queued"]
        assert sent == [request.pk]

    def test_an_endpoint_outside_the_scope_waits(self, acme, operator):
        turn_on_auto_approval(acme, scope_exceptions=["db-01.acme.test"])
        request = submit(acme, operator, endpoints=["web-01.acme.test", "db-01.acme.test"])
        assert request.status == RequestStatus.PENDING
        assert request.events.get().data["out_of_scope"] == ["db-01.acme.test"]

    def test_approval_not_required_runs_at_once(self, acme, operator):
        request = submit(
            acme,
            operator,
            key="link_workbench_alert",
            endpoints=[],
            parameters={"operation": "link", "alert_ids": ["WB-1-20261130-00001"]},
        )
        assert (request.status, request.approval_mode) == (RequestStatus.QUEUED, "not_required")
        assert verbs(request) == ["request.submitted", "execution.queued"]

    def test_an_action_needing_auto_approval_is_refused_and_nothing_is_created(
        self, acme, operator
    ):
        with pytest.raises(services.SubmissionRefused) as refused:
            submit(acme, operator, key="run_osquery")
        assert refused.value.message == (
            "Auto-approval must be enabled in order to use this response action."
        )
        assert not ActionRequest.objects.exists()
        assert not AuditEvent.objects.exists()

    @pytest.mark.parametrize("who", ["admin", "auditor"])
    def test_only_operators_submit(self, cast, acme, who):
        with pytest.raises(PermissionDenied):
            submit(acme, cast[who])
        assert not ActionRequest.objects.exists()

    def test_outsider_cannot_submit(self, acme, outsider):
        with pytest.raises(PermissionDenied):
            submit(acme, outsider)

    def test_the_same_form_submitted_twice_creates_one_request(self, acme, operator):
        token = uuid.uuid4()
        first = submit(acme, operator, submission_token=token)
        second = submit(acme, operator, submission_token=token)
        assert first.pk == second.pk
        assert ActionRequest.objects.count() == 1
        assert AuditEvent.objects.count() == 1


class TestDecide:
    def test_admin_approves(self, pending, admin):
        services.approve_request(pending.pk, actor=admin, comment="Go ahead", context=WEB)
        pending.refresh_from_db()
        assert (pending.status, pending.decided_by, pending.decision_reason) == (
            RequestStatus.APPROVED,
            admin,
            "Go ahead",
        )
        event = pending.events.get(verb="request.approved")
        assert (event.actor, event.role, event.source) == (admin, "admin", "web")
        assert event.data["status"] == {"before": "pending", "after": "approved"}

    def test_admin_rejects_with_a_reason(self, pending, admin):
        services.reject_request(pending.pk, actor=admin, reason="  Not this host  ")
        pending.refresh_from_db()
        assert (pending.status, pending.decision_reason) == (
            RequestStatus.REJECTED,
            "Not this host",
        )
        assert pending.events.get(verb="request.rejected").data["reason"] == "Not this host"

    def test_rejecting_needs_a_reason(self, pending, admin):
        with pytest.raises(services.TransitionRefused, match="Give a reason"):
            services.reject_request(pending.pk, actor=admin, reason="   ")
        pending.refresh_from_db()
        assert pending.status == RequestStatus.PENDING
        assert verbs(pending) == ["request.submitted"]

    @pytest.mark.parametrize("who", ["operator", "auditor", "outsider"])
    def test_only_admins_of_the_organization_decide(self, cast, pending, who):
        with pytest.raises(PermissionDenied):
            services.approve_request(pending.pk, actor=cast[who])
        with pytest.raises(PermissionDenied):
            services.reject_request(pending.pk, actor=cast[who], reason="no")
        pending.refresh_from_db()
        assert pending.status == RequestStatus.PENDING

    def test_requester_never_decides_their_own_request(self, pending, operator, acme):
        Membership.objects.filter(user=operator, organization=acme).update(role=Role.ADMIN)
        with pytest.raises(PermissionDenied, match="separation of duties"):
            services.approve_request(pending.pk, actor=operator)
        with pytest.raises(PermissionDenied, match="separation of duties"):
            services.reject_request(pending.pk, actor=operator, reason="mine")
        pending.refresh_from_db()
        assert pending.status == RequestStatus.PENDING

    def test_a_second_decision_is_refused_naming_the_first(self, pending, admin, second_admin):
        services.approve_request(pending.pk, actor=admin)
        with pytest.raises(services.TransitionRefused, match="already approved by acme-admin"):
            services.reject_request(pending.pk, actor=second_admin, reason="too late")
        with pytest.raises(services.TransitionRefused, match="already approved by acme-admin"):
            services.approve_request(pending.pk, actor=second_admin)
        assert verbs(pending) == ["request.submitted", "request.approved"]

    def test_a_rejected_request_cannot_be_approved(self, pending, admin, second_admin):
        services.reject_request(pending.pk, actor=admin, reason="no")
        with pytest.raises(services.TransitionRefused, match="already rejected by acme-admin"):
            services.approve_request(pending.pk, actor=second_admin)

    def test_a_cancelled_request_cannot_be_approved(self, pending, admin, operator):
        services.cancel_request(pending.pk, actor=operator)
        with pytest.raises(services.TransitionRefused, match="cancelled by operator"):
            services.approve_request(pending.pk, actor=admin)

    def test_an_expired_request_is_never_approved_even_before_it_is_marked(self, pending, admin):
        ActionRequest.objects.filter(pk=pending.pk).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
        with pytest.raises(services.TransitionRefused, match="expired"):
            services.approve_request(pending.pk, actor=admin)
        pending.refresh_from_db()
        assert pending.status == RequestStatus.EXPIRED
        expired = pending.events.get(verb="request.expired")
        assert (expired.actor, expired.source) == (None, "system")

    def test_a_request_that_needed_no_decision_cannot_be_decided(self, acme, operator, admin):
        turn_on_auto_approval(acme)
        request = submit(acme, operator)
        with pytest.raises(services.TransitionRefused, match="needed no decision"):
            services.reject_request(request.pk, actor=admin, reason="no")


class TestCancelAndExpire:
    def test_requester_cancels_while_pending(self, pending, operator):
        services.cancel_request(pending.pk, actor=operator, context=WEB)
        pending.refresh_from_db()
        assert pending.status == RequestStatus.CANCELLED
        assert verbs(pending) == ["request.submitted", "request.cancelled"]

    def test_nobody_else_cancels(self, pending, admin):
        with pytest.raises(PermissionDenied, match="Only the operator who submitted"):
            services.cancel_request(pending.pk, actor=admin)

    def test_a_decided_request_cannot_be_cancelled(self, pending, operator, admin):
        services.approve_request(pending.pk, actor=admin)
        with pytest.raises(services.TransitionRefused, match="already approved"):
            services.cancel_request(pending.pk, actor=operator)

    def test_expiry_marks_only_overdue_requests(self, acme, operator):
        overdue = submit(acme, operator)
        fresh = submit(acme, operator, endpoints=["web-02.acme.test"])
        ActionRequest.objects.filter(pk=overdue.pk).update(
            expires_at=timezone.now() - timedelta(minutes=1)
        )
        assert services.expire_overdue_requests() == 1
        assert services.expire_overdue_requests() == 0
        overdue.refresh_from_db()
        fresh.refresh_from_db()
        assert (overdue.status, fresh.status) == (RequestStatus.EXPIRED, RequestStatus.PENDING)
        assert verbs(overdue) == ["request.submitted", "request.expired"]


class TestApprovalSettings:
    def test_a_new_organization_starts_off_with_every_action_ticked(self, acme):
        settings = ApprovalSettings.for_organization(acme)
        assert settings.pk is None
        assert settings.auto_approval_enabled is False
        assert len(settings.auto_approved_actions) == 16
        assert "link_workbench_alert" not in settings.auto_approved_actions

    def test_changes_are_saved_with_before_and_after(self, acme, admin):
        services.update_approval_settings(
            acme,
            actor=admin,
            values={"auto_approval_enabled": True, "pending_lifetime_hours": 24},
            version=0,
            context=WEB,
        )
        event = AuditEvent.objects.get(verb="settings.changed")
        assert event.data == {
            "auto_approval_enabled": {"before": False, "after": True},
            "pending_lifetime_hours": {"before": 72, "after": 24},
        }
        assert ApprovalSettings.objects.get(organization=acme).version == 1

    def test_a_stale_form_is_refused(self, acme, admin):
        services.update_approval_settings(
            acme, actor=admin, values={"auto_approval_enabled": True}, version=0
        )
        with pytest.raises(services.StaleSettings, match="Someone changed these settings"):
            services.update_approval_settings(
                acme, actor=admin, values={"auto_approval_enabled": False}, version=0
            )
        assert ApprovalSettings.objects.get(organization=acme).auto_approval_enabled is True

    def test_master_on_needs_one_ticked_action(self, acme, admin):
        with pytest.raises(services.TransitionRefused, match="tick at least one action"):
            services.update_approval_settings(
                acme,
                actor=admin,
                values={"auto_approval_enabled": True, "auto_approved_actions": []},
                version=0,
            )
        assert not ApprovalSettings.objects.exists()
        assert not AuditEvent.objects.exists()

    def test_scope_imports_record_what_was_added_and_removed(self, acme, admin):
        services.update_approval_settings(
            acme,
            actor=admin,
            values={"scope_exceptions": ["a.acme.test", "b.acme.test"]},
            version=0,
        )
        services.update_approval_settings(
            acme,
            actor=admin,
            values={"scope_exceptions": ["b.acme.test", "c.acme.test"]},
            version=1,
        )
        last = AuditEvent.objects.filter(verb="scope.imported").order_by("-id").first()
        assert last.data["added"] == ["c.acme.test"]
        assert last.data["removed"] == ["a.acme.test"]

    @pytest.mark.parametrize("who", ["operator", "auditor", "outsider"])
    def test_only_admins_change_settings(self, cast, acme, who):
        with pytest.raises(PermissionDenied):
            services.update_approval_settings(
                acme, actor=cast[who], values={"auto_approval_enabled": True}, version=0
            )

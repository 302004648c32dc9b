"""What each change of a request leaves behind for the people who read it later: its times,
its audit event (in the organization's chain, with who, how and what changed), the
notification queued, and the sentence a refused person reads."""

import uuid
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone
from django.utils.formats import date_format

from actions.models import ResponseAction
from approvals import services
from approvals.models import ActionRequest, ApprovalMode, ApprovalSettings, RequestStatus
from audit.context import AuditContext
from audit.models import Source

from .approvals_helpers import submit, turn_on_auto_approval

pytestmark = pytest.mark.django_db

WEB = AuditContext(source=Source.WEB, ip_address="192.0.2.10", user_agent="pytest-browser")


def shown_time(moment) -> str:
    return date_format(timezone.localtime(moment), "DATETIME_FORMAT")


def notified(action_request) -> list[str]:
    return list(action_request.notifications.order_by("pk").values_list("kind", flat=True))


@pytest.fixture
def pending(acme, operator, admin):
    """A request waiting for `admin`, who is told of it by e-mail."""
    return submit(acme, operator, endpoints=["web-01.acme.test", "web-02.acme.test"])


class TestSubmitting:
    def test_the_submitted_event_records_the_whole_request_in_the_organizations_chain(
        self, acme, operator, admin
    ):
        action_request = submit(
            acme, operator, endpoints=["web-01.acme.test", "10.0.0.5"], summary="C2 beacon"
        )

        assert action_request.summary == "C2 beacon"
        assert ActionRequest.objects.get(pk=action_request.pk).summary == "C2 beacon"
        event = action_request.events.get()
        assert (event.organization, event.chain) == (acme, f"org:{acme.pk}")
        assert event.data == {
            "approval_mode": "manual",
            "status": "pending",
            "parameters": {
                "endpoints": ["web-01.acme.test", "10.0.0.5"],
                "description": "Beaconing",
            },
            "targets": ["web-01.acme.test", "10.0.0.5"],
            "out_of_scope": [],
        }
        assert action_request.decided_at is None
        assert notified(action_request) == ["pending"]

    def test_a_request_without_a_summary_has_none(self, acme, operator):
        action_request = services.submit_request(
            acme,
            ResponseAction.objects.get(key="isolate_endpoint"),
            actor=operator,
            parameters={"endpoints": ["web-01.acme.test"], "description": "x"},
            targets=[services.Target("endpoint", "web-01.acme.test")],
            endpoints=["web-01.acme.test"],
        )
        assert ActionRequest.objects.get(pk=action_request.pk).summary == ""

    def test_each_target_keeps_its_kind_and_order(self, acme, operator):
        action_request = services.submit_request(
            acme,
            ResponseAction.objects.get(key="disable_user_account"),
            actor=operator,
            parameters={"account": "alice@acme.test", "description": "Phished"},
            targets=[
                services.Target("account", "alice@acme.test"),
                services.Target("endpoint", "ws-7"),
            ],
            endpoints=["ws-7"],
        )
        assert list(
            action_request.targets.order_by("position").values_list("position", "kind", "value")
        ) == [(0, "account", "alice@acme.test"), (1, "endpoint", "ws-7")]

    def test_an_automatic_approval_is_decided_when_submitted_and_recorded_by_the_system(
        self, acme, operator, admin
    ):
        turn_on_auto_approval(acme, auto_approved_actions=["isolate_endpoint"])

        action_request = submit(acme, operator)

        stored = ActionRequest.objects.get(pk=action_request.pk)
        assert (stored.status, stored.approval_mode) == (
            RequestStatus.QUEUED,
            ApprovalMode.AUTO,
        )
        assert stored.decided_at == stored.submitted_at
        assert stored.decided_by is None
        auto = stored.events.get(verb="request.auto_approved")
        assert (auto.organization, auto.chain, auto.actor, auto.source) == (
            acme,
            f"org:{acme.pk}",
            None,
            "system",
        )
        assert notified(stored) == ["auto_approved"]

    @pytest.mark.parametrize("who", ["admin", "auditor"])
    def test_a_member_who_is_not_an_operator_is_told_what_their_role_does_not_allow(
        self, cast, acme, who
    ):
        with pytest.raises(PermissionDenied) as refused:
            submit(acme, cast[who])
        assert str(refused.value) == (
            "Your role in Acme Corporation does not allow you to submit requests."
        )


class TestSubmissionTokenRace:
    """Two submissions of one token: the second to insert meets the unique token."""

    def test_the_same_operator_losing_the_race_gets_the_first_request(self, acme, operator, admin):
        token = uuid.uuid4()
        first = submit(acme, operator, submission_token=token)

        again = submit(acme, operator, submission_token=token)

        assert again.pk == first.pk
        assert ActionRequest.objects.count() == 1
        # The refused insert took its events and its notification with it.
        assert [e.verb for e in first.events.all()] == ["request.submitted"]
        assert notified(first) == ["pending"]


class TestDeciding:
    def test_an_approval_is_timed_recorded_in_the_chain_and_told_to_the_requester(
        self, acme, pending, admin
    ):
        before = timezone.now()
        services.approve_request(pending.pk, actor=admin, context=WEB)
        after = timezone.now()

        stored = ActionRequest.objects.get(pk=pending.pk)
        assert before <= stored.decided_at <= after
        event = stored.events.get(verb="request.approved")
        assert (event.organization, event.chain, event.actor, event.role) == (
            acme,
            f"org:{acme.pk}",
            admin,
            "admin",
        )
        assert event.data == {"status": {"before": "pending", "after": "approved"}, "reason": ""}
        assert notified(stored) == ["pending", "approved"]

    def test_a_rejection_is_timed_and_told_to_the_requester_as_a_rejection(
        self, acme, pending, admin
    ):
        before = timezone.now()
        services.reject_request(pending.pk, actor=admin, reason="Wrong host", context=WEB)
        after = timezone.now()

        stored = ActionRequest.objects.get(pk=pending.pk)
        assert before <= stored.decided_at <= after
        event = stored.events.get(verb="request.rejected")
        assert (event.organization, event.chain) == (acme, f"org:{acme.pk}")
        assert notified(stored) == ["pending", "rejected"]

    @pytest.mark.parametrize(
        "decision,doing",
        [
            (lambda pk, actor: services.approve_request(pk, actor=actor), "approve requests"),
            (
                lambda pk, actor: services.reject_request(pk, actor=actor, reason="no"),
                "reject requests",
            ),
        ],
        ids=["approve", "reject"],
    )
    @pytest.mark.parametrize("who", ["operator", "auditor"])
    def test_a_member_who_is_not_an_admin_is_told_what_their_role_does_not_allow(
        self, cast, pending, who, decision, doing
    ):
        with pytest.raises(PermissionDenied) as refused:
            decision(pending.pk, cast[who])
        assert str(refused.value) == f"Your role in Acme Corporation does not allow you to {doing}."

    def test_a_decision_on_an_overdue_request_expires_it_at_its_expiry_time(
        self, acme, pending, admin
    ):
        expired_at = timezone.now() - timedelta(minutes=5)
        ActionRequest.objects.filter(pk=pending.pk).update(expires_at=expired_at)

        with pytest.raises(services.TransitionRefused) as refused:
            services.approve_request(pending.pk, actor=admin)

        assert refused.value.message == (
            f"This request expired at {shown_time(expired_at)}; it can no longer be decided."
        )
        stored = ActionRequest.objects.get(pk=pending.pk)
        assert (stored.status, stored.decided_at, stored.decided_by) == (
            RequestStatus.EXPIRED,
            expired_at,
            None,
        )
        event = stored.events.get(verb="request.expired")
        assert (event.organization, event.chain, event.actor, event.source) == (
            acme,
            f"org:{acme.pk}",
            None,
            "system",
        )
        assert event.data == {"status": {"before": "pending", "after": "expired"}}
        assert notified(stored) == ["pending", "expired"]

    def test_a_request_that_needed_no_decision_says_so(self, acme, operator, admin):
        turn_on_auto_approval(acme, auto_approved_actions=["isolate_endpoint"])
        automatic = submit(acme, operator)

        with pytest.raises(services.TransitionRefused) as refused:
            services.approve_request(automatic.pk, actor=admin)

        assert refused.value.message == (
            "This request needed no decision (automatically approved)."
        )


class TestCancelling:
    def test_a_cancellation_is_timed_and_recorded_with_who_and_how(self, acme, pending, operator):
        before = timezone.now()
        services.cancel_request(pending.pk, actor=operator, context=WEB)
        after = timezone.now()

        stored = ActionRequest.objects.get(pk=pending.pk)
        assert stored.status == RequestStatus.CANCELLED
        assert before <= stored.decided_at <= after
        assert stored.decided_by == operator
        event = stored.events.get(verb="request.cancelled")
        assert (event.organization, event.chain) == (acme, f"org:{acme.pk}")
        assert (event.actor, event.actor_username, event.role) == (operator, "operator", "operator")
        assert (event.source, event.ip_address, event.user_agent) == (
            "web",
            "192.0.2.10",
            "pytest-browser",
        )
        assert event.data == {"status": {"before": "pending", "after": "cancelled"}}

    def test_only_the_requester_may_cancel_and_is_told_so(self, pending, admin):
        with pytest.raises(PermissionDenied) as refused:
            services.cancel_request(pending.pk, actor=admin)
        assert str(refused.value) == "Only the operator who submitted a request can cancel it."
        assert ActionRequest.objects.get(pk=pending.pk).status == RequestStatus.PENDING


class TestExpiring:
    def test_a_request_still_within_its_time_is_not_expired(self, pending):
        assert services.expire_request(pending.pk) is False
        assert ActionRequest.objects.get(pk=pending.pk).status == RequestStatus.PENDING

    def test_the_periodic_job_expires_only_overdue_pending_requests_and_counts_them(
        self, acme, operator, admin
    ):
        overdue = [submit(acme, operator, endpoints=[f"late-{n}"]) for n in range(2)]
        fresh = submit(acme, operator, endpoints=["fresh"])
        ActionRequest.objects.filter(pk__in=[r.pk for r in overdue]).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )

        assert services.expire_overdue_requests() == 2
        assert services.expire_overdue_requests() == 0
        statuses = dict(ActionRequest.objects.values_list("pk", "status"))
        assert [statuses[r.pk] for r in overdue] == [RequestStatus.EXPIRED] * 2
        assert statuses[fresh.pk] == RequestStatus.PENDING


class TestSubmittingWithAToken:
    def test_a_token_never_returns_a_request_submitted_without_one(self, acme, operator):
        tokenless = submit(acme, operator, endpoints=["first.acme.test"])

        with_token = submit(
            acme, operator, endpoints=["second.acme.test"], submission_token=uuid.uuid4()
        )

        assert with_token.pk != tokenless.pk
        assert [t.value for t in with_token.targets.all()] == ["second.acme.test"]


class TestExecution:
    def test_an_approved_request_is_run_once_the_approval_commits(
        self, pending, admin, settings, django_capture_on_commit_callbacks
    ):
        settings.RESPONSE_EXECUTOR = "simulated"
        with django_capture_on_commit_callbacks(execute=True):
            services.approve_request(pending.pk, actor=admin)

        stored = ActionRequest.objects.get(pk=pending.pk)
        assert stored.status == RequestStatus.SUCCESSFUL
        assert stored.execution_attempts == 1

    def test_an_automatically_approved_request_is_run_once_it_is_submitted(
        self, acme, operator, settings, django_capture_on_commit_callbacks
    ):
        settings.RESPONSE_EXECUTOR = "simulated"
        turn_on_auto_approval(acme, auto_approved_actions=["isolate_endpoint"])
        with django_capture_on_commit_callbacks(execute=True):
            action_request = submit(acme, operator)

        stored = ActionRequest.objects.get(pk=action_request.pk)
        assert stored.status == RequestStatus.SUCCESSFUL
        assert stored.execution_attempts == 1


class TestApprovalSettings:
    def test_each_save_moves_the_version_on_so_a_form_opened_before_it_is_stale(self, acme, admin):
        first = services.update_approval_settings(
            acme, actor=admin, values={"pending_lifetime_hours": 24}, version=0
        )
        second = services.update_approval_settings(
            acme, actor=admin, values={"pending_lifetime_hours": 48}, version=first.version
        )
        assert (first.version, second.version) == (1, 2)
        saved_at = timezone.now() - timedelta(days=3, hours=5)
        ApprovalSettings.objects.filter(pk=second.pk).update(updated_at=saved_at)

        with pytest.raises(services.StaleSettings) as refused:
            services.update_approval_settings(
                acme, actor=admin, values={"pending_lifetime_hours": 12}, version=1
            )
        assert refused.value.message == (
            "Someone changed these settings after you opened the page "
            f"(at {shown_time(saved_at)}). Review the current settings and save again."
        )

    def test_a_change_is_recorded_in_the_organizations_chain_with_who_and_how(self, acme, admin):
        services.update_approval_settings(
            acme, actor=admin, values={"pending_lifetime_hours": 24}, version=0, context=WEB
        )

        event = acme.audit_events.get(verb="settings.changed")
        assert (event.chain, event.actor, event.role, event.source) == (
            f"org:{acme.pk}",
            admin,
            "admin",
            "web",
        )
        assert event.data == {"pending_lifetime_hours": {"before": 72, "after": 24}}

    def test_an_imported_scope_list_is_recorded_with_who_and_what_changed(self, acme, admin):
        services.update_approval_settings(
            acme,
            actor=admin,
            values={"scope_exceptions": ["db-01.acme.test", "db-02.acme.test"]},
            version=0,
            context=WEB,
        )

        event = acme.audit_events.get(verb="scope.imported")
        assert (event.chain, event.actor, event.role, event.source) == (
            f"org:{acme.pk}",
            admin,
            "admin",
            "web",
        )
        assert event.data == {
            "list": "scope_exceptions",
            "count": {"before": 0, "after": 2},
            "added": ["db-01.acme.test", "db-02.acme.test"],
            "removed": [],
        }

    def test_the_log_keeps_only_the_host_of_a_webhook_address(self, acme, admin):
        services.update_approval_settings(
            acme,
            actor=admin,
            values={"notify_webhook_url": "https://hooks.example.com/T000/B000/s3cr3t?k=v"},
            version=0,
        )

        event = acme.audit_events.get(verb="settings.changed")
        assert event.data == {
            "notify_webhook_url": {"before": "", "after": "https://hooks.example.com/…"}
        }
        assert "s3cr3t" not in str(event.data)

    @pytest.mark.parametrize(
        "values,problem",
        [
            (
                {"auto_approval_enabled": True, "auto_approved_actions": []},
                "With automatic approval on, tick at least one action to approve automatically, "
                "or turn automatic approval off.",
            ),
            (
                {"scope_mode": "selected", "scope_selected": []},
                "Selected endpoints only needs at least one endpoint: import a CSV file of them, "
                "or choose all endpoints.",
            ),
        ],
        ids=["no-action-ticked", "no-endpoint-selected"],
    )
    def test_unusable_settings_are_refused_saying_what_to_do(self, acme, admin, values, problem):
        with pytest.raises(services.TransitionRefused) as refused:
            services.update_approval_settings(acme, actor=admin, values=values, version=0)
        assert refused.value.message == problem
        assert not acme.audit_events.exists()

    @pytest.mark.parametrize("who", ["operator", "auditor"])
    def test_only_an_admin_changes_them_and_others_are_told_why(self, cast, acme, who):
        with pytest.raises(PermissionDenied) as refused:
            services.update_approval_settings(
                acme, actor=cast[who], values={"pending_lifetime_hours": 24}, version=0
            )
        assert str(refused.value) == (
            "Your role in Acme Corporation does not allow you to change approval settings."
        )


class TestScriptLibrary:
    def test_an_upload_is_recorded_with_the_scripts_name_language_hash_and_size(
        self, acme, operator
    ):
        content = "Get-Process | Select-Object -First 1\n"
        services.upload_script(
            acme,
            actor=operator,
            name="top-process.ps1",
            language="powershell",
            content=content,
            context=WEB,
        )

        event = acme.audit_events.get(verb="script.uploaded")
        assert (event.chain, event.actor, event.role, event.source) == (
            f"org:{acme.pk}",
            operator,
            "operator",
            "web",
        )
        assert event.data == {
            "name": "top-process.ps1",
            "language": "powershell",
            "sha256": "4890c9df340bd6e0f4b4d32d3de34e2284af4adc1682a79f30cd21481d38b0a0",
            "size": 37,
        }

    def test_an_organization_keeps_several_scripts(self, acme, operator):
        for name in ("one.sh", "two.sh"):
            services.upload_script(
                acme, actor=operator, name=name, language="bash", content="echo hi\n"
            )
        assert sorted(acme.scripts.values_list("name", flat=True)) == ["one.sh", "two.sh"]

    @pytest.mark.parametrize("who", ["admin", "auditor"])
    def test_only_an_operator_uploads_and_others_are_told_why(self, cast, acme, who):
        with pytest.raises(PermissionDenied) as refused:
            services.upload_script(
                acme, actor=cast[who], name="x.sh", language="bash", content="echo hi\n"
            )
        assert str(refused.value) == (
            "Your role in Acme Corporation does not allow you to upload scripts."
        )


def test_a_requester_no_longer_a_member_is_told_they_cannot_cancel(acme, pending, operator):
    operator.memberships.filter(organization=acme).delete()
    with pytest.raises(PermissionDenied) as refused:
        services.cancel_request(pending.pk, actor=operator)
    assert str(refused.value) == (
        "Your role in Acme Corporation does not allow you to cancel requests."
    )

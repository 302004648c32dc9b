"""Execution steps as service functions, the live status, and ending a remote shell early."""

import json
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from approvals import services
from approvals.execution import steps as execution
from approvals.models import ApprovalSettings, RequestStatus, TargetStatus
from approvals.state import has_active_remote_shell, isolated_endpoints
from approvals.transitions import lock_request
from audit.context import AuditContext
from audit.models import AuditEvent, Source

from .approvals_helpers import submit
from .conftest import client_for

pytestmark = pytest.mark.django_db

WEB = AuditContext(source=Source.WEB, ip_address="192.0.2.10", user_agent="pytest-browser")


@pytest.fixture(autouse=True)
def _instant_executor(settings):
    settings.SIMULATED_EXECUTOR_DELAY = 0
    settings.RESPONSE_EXECUTOR = "simulated"


def verbs(request):
    return list(request.events.order_by("id").values_list("verb", flat=True))


def approved(acme, operator, admin, **kw):
    request = submit(acme, operator, **kw)
    services.approve_request(request.pk, actor=admin)
    return request


def run(request):
    """What the task does, step by step, with every target's result given."""
    job = execution.start_execution(request.pk)
    for target in job.targets:
        ok = not target.value.startswith("fail-")
        execution.finish_target(target.id, succeeded=ok, message="done" if ok else "no answer")
    return execution.finish_execution(request.pk)


def shell(acme, operator, admin, endpoint="ws-1"):
    request = approved(
        acme,
        operator,
        admin,
        key="start_remote_shell",
        endpoints=[endpoint],
        parameters={"endpoints": [endpoint], "reason": "Triage"},
    )
    execution.queue_request(request.pk)
    return run(request)


class TestQueue:
    def test_it_queues_an_approved_request_and_sends_it_after_commit(
        self, acme, operator, admin, monkeypatch, django_capture_on_commit_callbacks
    ):
        sent = []
        monkeypatch.setattr(execution, "send", sent.append)
        request = approved(acme, operator, admin)

        with django_capture_on_commit_callbacks() as callbacks:
            assert execution.queue_request(request.pk)
        assert sent == []
        for callback in callbacks:
            callback()

        request.refresh_from_db()
        assert request.status == RequestStatus.QUEUED
        assert request.queued_at is not None
        assert sent == [request.pk]
        event = request.events.get(verb="execution.queued")
        assert event.data == {"status": {"before": "approved", "after": "queued"}}
        assert event.source == "system" and event.actor is None

    def test_it_does_not_queue_twice(self, acme, operator, admin):
        request = approved(acme, operator, admin)
        assert execution.queue_request(request.pk)
        assert not execution.queue_request(request.pk)
        assert verbs(request).count("execution.queued") == 1

    def test_a_pending_request_is_not_queued(self, acme, operator):
        request = submit(acme, operator)
        assert not execution.queue_request(request.pk)
        request.refresh_from_db()
        assert request.status == RequestStatus.PENDING

    def test_queue_locked_works_in_the_callers_transaction_and_a_rollback_sends_nothing(
        self, acme, operator, admin, monkeypatch, django_capture_on_commit_callbacks
    ):
        sent = []
        monkeypatch.setattr(execution, "send", sent.append)
        request = approved(acme, operator, admin)

        class Abandoned(Exception):
            pass

        with (
            django_capture_on_commit_callbacks(execute=True),
            pytest.raises(Abandoned),
            transaction.atomic(),
        ):
            execution.queue_locked(lock_request(request.pk))
            raise Abandoned
        request.refresh_from_db()
        assert request.status == RequestStatus.APPROVED
        assert "execution.queued" not in verbs(request) and sent == []

        with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
            execution.queue_locked(lock_request(request.pk))
            assert sent == []  # not before the caller's transaction commits
        request.refresh_from_db()
        assert request.status == RequestStatus.QUEUED and sent == [request.pk]
        assert verbs(request).count("execution.queued") == 1

    def test_queue_locked_refuses_a_request_that_is_not_approved(self, acme, operator):
        request = submit(acme, operator)
        with pytest.raises(ValueError), transaction.atomic():
            execution.queue_locked(lock_request(request.pk))
        request.refresh_from_db()
        assert request.status == RequestStatus.PENDING


class TestRun:
    def test_start_moves_queued_to_in_progress_with_every_target(self, acme, operator, admin):
        request = approved(acme, operator, admin, endpoints=["ws-1", "ws-2"])
        execution.queue_request(request.pk)

        job = execution.start_execution(request.pk)

        request.refresh_from_db()
        assert request.status == RequestStatus.IN_PROGRESS
        assert request.started_at is not None and request.execution_attempts == 1
        assert [t.value for t in job.targets] == ["ws-1", "ws-2"]
        assert job.idempotency_key == request.uuid
        assert job.action == "isolate_endpoint"
        assert job.parameters == {"endpoints": ["ws-1", "ws-2"], "description": "Beaconing"}
        assert set(request.targets.values_list("status", flat=True)) == {"in_progress"}
        assert request.events.get(verb="execution.started").data["attempt"] == 1

    def test_a_request_that_is_not_queued_does_not_start(self, acme, operator, admin):
        request = approved(acme, operator, admin)
        assert execution.start_execution(request.pk) is None

    def test_a_target_result_is_recorded_once(self, acme, operator, admin):
        request = approved(acme, operator, admin)
        execution.queue_request(request.pk)
        [target] = execution.start_execution(request.pk).targets

        assert execution.finish_target(target.id, succeeded=True, message="isolated")
        assert not execution.finish_target(target.id, succeeded=False, message="late duplicate")

        result = request.targets.get()
        assert (result.status, result.message) == (TargetStatus.SUCCESSFUL, "isolated")
        assert result.finished_at is not None

    @pytest.mark.parametrize(
        "endpoints,status,verb",
        [
            (["ws-1", "ws-2"], RequestStatus.SUCCESSFUL, "execution.succeeded"),
            (
                ["ws-1", "fail-2"],
                RequestStatus.PARTIALLY_SUCCESSFUL,
                "execution.partially_succeeded",
            ),
            (["fail-1", "fail-2"], RequestStatus.FAILED, "execution.failed"),
        ],
    )
    def test_the_request_shows_the_least_successful_outcome(
        self, acme, operator, admin, endpoints, status, verb
    ):
        request = approved(acme, operator, admin, endpoints=endpoints)
        execution.queue_request(request.pk)

        finished = run(request)

        assert finished.status == status
        assert finished.finished_at is not None
        event = request.events.get(verb=verb)
        assert event.data["status"] == {"before": "in_progress", "after": status}
        assert [t["value"] for t in event.data["targets"]] == endpoints

    def test_targets_the_executor_gave_up_on_are_terminated(self, acme, operator, admin):
        request = approved(acme, operator, admin, endpoints=["ws-1", "ws-2"])
        execution.queue_request(request.pk)
        execution.start_execution(request.pk)

        finished = execution.finish_execution(
            request.pk, unfinished=TargetStatus.TERMINATED, message="Stopped: time limit."
        )

        assert finished.status == RequestStatus.TERMINATED
        assert set(request.targets.values_list("message", flat=True)) == {"Stopped: time limit."}
        assert verbs(request)[-1] == "execution.terminated"

    def test_a_target_without_a_result_fails(self, acme, operator, admin):
        request = approved(acme, operator, admin, endpoints=["ws-1", "ws-2"])
        execution.queue_request(request.pk)
        job = execution.start_execution(request.pk)
        execution.finish_target(job.targets[0].id, succeeded=True)

        finished = execution.finish_execution(request.pk)

        assert finished.status == RequestStatus.PARTIALLY_SUCCESSFUL
        assert request.targets.get(value="ws-2").message == execution.NO_RESULT

    def test_finishing_twice_changes_nothing(self, acme, operator, admin):
        request = approved(acme, operator, admin)
        execution.queue_request(request.pk)
        run(request)

        again = execution.finish_execution(request.pk)

        assert again.status == RequestStatus.SUCCESSFUL
        assert verbs(request).count("execution.succeeded") == 1

    def test_a_successful_isolation_then_allows_restoring(self, acme, operator, admin):
        request = approved(acme, operator, admin, endpoints=["ws-1", "fail-2"])
        assert isolated_endpoints(acme, ["ws-1", "fail-2"]) == set()
        execution.queue_request(request.pk)
        run(request)

        assert isolated_endpoints(acme, ["ws-1", "fail-2"]) == {"ws-1"}


class TestRemoteShell:
    def test_a_started_session_is_active_for_the_validity_period(self, acme, operator, admin):
        request = shell(acme, operator, admin)

        assert request.status == RequestStatus.SUCCESSFUL
        assert request.active_until == request.finished_at + timedelta(hours=4)
        assert has_active_remote_shell(acme, "ws-1")
        assert request.events.get(verb="execution.succeeded").data["active_until"]

    def test_the_validity_period_comes_from_the_approval_settings(self, acme, operator, admin):
        ApprovalSettings.objects.create(organization=acme, remote_shell_validity_hours=8)

        request = shell(acme, operator, admin)

        assert request.active_until == request.finished_at + timedelta(hours=8)

    def test_a_session_that_failed_is_never_active(self, acme, operator, admin):
        request = shell(acme, operator, admin, endpoint="fail-1")

        assert request.status == RequestStatus.FAILED
        assert request.active_until is None
        assert not has_active_remote_shell(acme, "fail-1")

    def test_an_admin_ends_it_early_with_a_reason(self, acme, operator, admin):
        request = shell(acme, operator, admin)

        ended = execution.end_remote_shell(
            request.pk, actor=admin, reason="  Triage done  ", context=WEB
        )

        assert ended.ended_by == admin and ended.end_reason == "Triage done"
        assert ended.ended_at <= timezone.now()
        assert not has_active_remote_shell(acme, "ws-1")
        event = request.events.get(verb="remote_shell.ended")
        assert (event.actor, event.role, event.source) == (admin, "admin", "web")
        assert event.data["reason"] == "Triage done"

    def test_ending_needs_a_reason(self, acme, operator, admin):
        request = shell(acme, operator, admin)

        with pytest.raises(services.TransitionRefused, match="Give a reason"):
            execution.end_remote_shell(request.pk, actor=admin, reason=" ")
        assert has_active_remote_shell(acme, "ws-1")

    @pytest.mark.parametrize("who", ["operator", "auditor"])
    def test_only_an_admin_ends_it(self, cast, acme, operator, admin, who):
        request = shell(acme, operator, admin)

        with pytest.raises(PermissionDenied):
            execution.end_remote_shell(request.pk, actor=cast[who], reason="No")

    def test_ending_it_twice_is_refused_with_who_did_it(self, acme, operator, admin):
        request = shell(acme, operator, admin)
        execution.end_remote_shell(request.pk, actor=admin, reason="Done")

        with pytest.raises(services.TransitionRefused, match="already ended .* by acme-admin"):
            execution.end_remote_shell(request.pk, actor=admin, reason="Again")
        assert verbs(request).count("remote_shell.ended") == 1

    def test_a_session_past_its_validity_is_refused_and_marked_expired(self, acme, operator, admin):
        request = shell(acme, operator, admin)
        request.active_until = timezone.now() - timedelta(minutes=1)
        request.save()

        with pytest.raises(services.TransitionRefused, match="validity period was over"):
            execution.end_remote_shell(request.pk, actor=admin, reason="Done")

        request.refresh_from_db()
        assert request.ended_at == request.active_until and request.ended_by is None
        assert "remote_shell.expired" in verbs(request)

    def test_a_session_that_has_not_started_cannot_be_ended(self, acme, operator, admin):
        request = approved(
            acme,
            operator,
            admin,
            key="start_remote_shell",
            endpoints=["ws-1"],
            parameters={"endpoints": ["ws-1"], "reason": "Triage"},
        )

        with pytest.raises(services.TransitionRefused, match="has not started yet"):
            execution.end_remote_shell(request.pk, actor=admin, reason="Done")

    def test_another_action_is_not_a_session(self, acme, operator, admin):
        request = approved(acme, operator, admin)

        with pytest.raises(services.TransitionRefused, match="Only a remote shell session"):
            execution.end_remote_shell(request.pk, actor=admin, reason="Done")

    def test_sessions_past_their_validity_are_ended(self, acme, operator, admin):
        past = shell(acme, operator, admin, endpoint="ws-1")
        current = shell(acme, operator, admin, endpoint="ws-2")
        past.active_until = timezone.now() - timedelta(seconds=1)
        past.save()

        assert execution.expire_remote_shells() == 1
        assert execution.expire_remote_shells() == 0

        past.refresh_from_db()
        current.refresh_from_db()
        assert past.ended_at == past.active_until
        assert past.end_reason == execution.SHELL_EXPIRED
        assert current.ended_at is None
        assert past.events.get(verb="remote_shell.expired").actor is None


class TestRedispatch:
    WAITED = timedelta(minutes=5)

    def ago(self, request, **changes):
        type(request).objects.filter(pk=request.pk).update(**changes)
        request.refresh_from_db()
        return request

    @pytest.fixture
    def sent(self, monkeypatch):
        sent = []
        monkeypatch.setattr(execution, "send", sent.append)
        return sent

    def test_a_request_left_queued_is_sent_again(
        self, acme, operator, admin, sent, django_capture_on_commit_callbacks
    ):
        request = approved(acme, operator, admin)
        execution.queue_request(request.pk)
        long_ago = timezone.now() - timedelta(minutes=6)
        self.ago(request, queued_at=long_ago)

        with django_capture_on_commit_callbacks(execute=True):
            assert execution.redispatch_stranded(waited=self.WAITED) == 1

        assert sent == [request.pk]
        request.refresh_from_db()
        assert request.status == RequestStatus.QUEUED and request.queued_at > long_ago
        event = request.events.get(verb="execution.redispatched")
        assert event.data["status"] == "queued" and event.data["waited_seconds"] >= 360
        # Sent again: the next re-send waits as long again.
        assert execution.redispatch_stranded(waited=self.WAITED) == 0

    def test_a_request_approved_but_never_queued_is_queued_and_sent(
        self, acme, operator, admin, sent, django_capture_on_commit_callbacks
    ):
        request = approved(acme, operator, admin)
        self.ago(request, decided_at=timezone.now() - timedelta(minutes=6))

        with django_capture_on_commit_callbacks(execute=True):
            assert execution.redispatch_stranded(waited=self.WAITED) == 1

        request.refresh_from_db()
        assert request.status == RequestStatus.QUEUED
        assert sent == [request.pk]
        event = request.events.get(verb="execution.redispatched")
        assert event.data["status"] == {"before": "approved", "after": "queued"}

    def test_a_request_queued_a_moment_ago_is_left_alone(self, acme, operator, admin, sent):
        request = approved(acme, operator, admin)
        execution.queue_request(request.pk)

        assert execution.redispatch_stranded(waited=self.WAITED) == 0

    def test_a_request_in_progress_with_recent_activity_is_left_alone(
        self, acme, operator, admin, sent
    ):
        request = approved(acme, operator, admin, endpoints=["ws-1", "ws-2"])
        execution.queue_request(request.pk)
        job = execution.start_execution(request.pk)
        self.ago(request, started_at=timezone.now() - timedelta(hours=1))
        execution.finish_target(job.targets[0].id, succeeded=True)
        self.ago(request, heartbeat_at=None)  # started by a worker without heartbeats

        assert execution.redispatch_stranded(idle=timedelta(minutes=15)) == 0

    def test_a_request_in_progress_with_no_activity_for_long_is_sent_again(
        self, acme, operator, admin, sent, django_capture_on_commit_callbacks
    ):
        request = approved(acme, operator, admin)
        execution.queue_request(request.pk)
        execution.start_execution(request.pk)
        # Started by a worker without heartbeats: only the lack of activity tells.
        self.ago(request, started_at=timezone.now() - timedelta(hours=1), heartbeat_at=None)

        # Its last event (execution.started) is recent: the attempt may still be running.
        assert execution.redispatch_stranded(idle=timedelta(minutes=15)) == 0
        with django_capture_on_commit_callbacks(execute=True):
            assert execution.redispatch_stranded(idle=timedelta(0)) == 1

        assert sent == [request.pk]

    @pytest.mark.parametrize("status", [RequestStatus.PENDING, RequestStatus.SUCCESSFUL])
    def test_other_requests_are_never_sent(self, acme, operator, admin, sent, status):
        request = submit(acme, operator)
        self.ago(
            request,
            status=status,
            decided_at=timezone.now() - timedelta(days=1),
            queued_at=timezone.now() - timedelta(days=1),
            started_at=timezone.now() - timedelta(days=1),
        )

        assert execution.redispatch_stranded(waited=timedelta(0), idle=timedelta(0)) == 0


def url(name, request, slug="acme"):
    return reverse(name, args=[slug, request.uuid])


class TestStatusJson:
    @pytest.mark.parametrize(
        "who,expected", [("operator", 200), ("admin", 200), ("auditor", 200), ("outsider", 404)]
    )
    def test_every_member_can_follow_a_request(self, cast, acme, operator, who, expected):
        request = submit(acme, operator)
        assert client_for(cast[who]).get(url("request_status", request)).status_code == expected

    def test_anonymous_is_sent_to_sign_in(self, client, acme, operator):
        request = submit(acme, operator)
        assert client.get(url("request_status", request)).status_code == 302

    def test_it_gives_the_status_and_each_targets_status(
        self, acme, operator, admin, django_assert_max_num_queries
    ):
        request = approved(acme, operator, admin, endpoints=["ws-1", "fail-2"])
        execution.queue_request(request.pk)
        run(request)
        client = client_for(operator)

        with django_assert_max_num_queries(5):
            response = client.get(url("request_status", request))

        assert response["Content-Type"] == "application/json"
        assert "no-store" in response["Cache-Control"] or "no-cache" in response["Cache-Control"]
        data = json.loads(response.content)
        assert data["status"] == "partially_successful"
        assert data["status_label"] == "Partially successful"
        assert data["running"] is False
        assert data["execution_attempts"] == 1
        assert set(data["finished_at"]) == {"iso", "text"}
        assert [(t["value"], t["status"], t["message"]) for t in data["targets"]] == [
            ("ws-1", "successful", "done"),
            ("fail-2", "failed", "no answer"),
        ]

    def test_a_running_request_says_so(self, acme, operator, admin):
        request = approved(acme, operator, admin)
        execution.queue_request(request.pk)

        data = json.loads(client_for(admin).get(url("request_status", request)).content)

        assert data["running"] is True and data["status"] == "queued"
        assert data["started_at"] is None

    def test_it_answers_only_get(self, acme, operator):
        request = submit(acme, operator)
        assert client_for(operator).post(url("request_status", request)).status_code == 405


class TestEndSessionView:
    @pytest.fixture
    def active(self, acme, operator, admin):
        return shell(acme, operator, admin)

    @pytest.mark.parametrize(
        "who,expected", [("operator", 403), ("auditor", 403), ("outsider", 404)]
    )
    def test_only_admins_of_the_organization_end_a_session(self, cast, active, who, expected):
        response = client_for(cast[who]).post(url("end_session", active), {"reason": "Done"})

        assert response.status_code == expected
        active.refresh_from_db()
        assert active.ended_at is None

    def test_an_admin_ends_the_session_and_the_page_says_when_by_whom_and_why(self, admin, active):
        client = client_for(admin)

        response = client.post(url("end_session", active), {"reason": "Triage done"}, follow=True)

        assert response.redirect_chain[-1][0] == url("request_detail", active)
        page = response.content.decode()
        assert "The remote shell session was ended." in page
        assert "Ended at" in page and "by acme-admin" in page and "Reason: Triage done" in page
        assert "End session now" not in page
        active.refresh_from_db()
        event = AuditEvent.objects.get(verb="remote_shell.ended")
        assert (event.ip_address, event.source) == ("127.0.0.1", "web")

    def test_without_a_reason_it_is_refused_with_a_message(self, admin, active):
        response = client_for(admin).post(url("end_session", active), {"reason": ""}, follow=True)

        assert "Give a reason for ending the session" in response.content.decode()
        active.refresh_from_db()
        assert active.ended_at is None

    def test_a_session_that_is_not_active_is_refused_with_a_message(self, admin, active):
        execution.end_remote_shell(active.pk, actor=admin, reason="Done")

        response = client_for(admin).post(url("end_session", active), {"reason": "Again"})

        assert response.status_code == 302
        messages = [str(m) for m in response.wsgi_request._messages]
        assert messages and "already ended" in messages[0]

    def test_it_needs_post_and_a_csrf_token(self, csrf_client, admin, active):
        csrf_client.force_login(admin)
        assert csrf_client.get(url("end_session", active)).status_code == 405
        assert csrf_client.post(url("end_session", active), {"reason": "x"}).status_code == 403

    def test_the_page_offers_admins_to_end_an_active_session(self, cast, active):
        admin_page = client_for(cast["admin"]).get(url("request_detail", active)).content.decode()
        operator_page = (
            client_for(cast["operator"]).get(url("request_detail", active)).content.decode()
        )

        assert "Active until" in admin_page and "End session now" in admin_page
        assert "Active until" in operator_page and "End session now" not in operator_page


class TestDetailPage:
    def test_a_running_request_is_followed_by_the_status_script(self, acme, operator, admin):
        request = approved(acme, operator, admin, endpoints=["ws-1"])
        execution.queue_request(request.pk)

        page = client_for(operator).get(url("request_detail", request)).content.decode()

        assert 'data-running="true"' in page
        assert f'data-status-url="{url("request_status", request)}"' in page
        assert '<script src="/static/js/request_status.js" defer></script>' in page
        assert "<script>" not in page  # no inline script: the page works under a strict CSP

    def test_a_finished_request_shows_its_execution_and_each_target(self, acme, operator, admin):
        request = approved(acme, operator, admin, endpoints=["ws-1", "fail-2"])
        execution.queue_request(request.pk)
        run(request)

        page = client_for(operator).get(url("request_detail", request)).content.decode()

        assert 'data-running="false"' in page
        for label in ["Queued", "Started", "Finished", "Attempts"]:
            assert f'<dt class="col-sm-3">{label}</dt>' in page
        assert '<span class="status status-successful"><span aria-hidden="true">✔</span> ' in page
        assert '<span class="status status-failed"><span aria-hidden="true">✖</span> ' in page
        assert "no answer" in page

    def test_a_pending_request_has_no_execution_section_but_is_followed(self, acme, operator):
        request = submit(acme, operator)

        page = client_for(operator).get(url("request_detail", request)).content.decode()

        assert 'id="execution"' not in page
        assert 'data-status="pending"' in page

    def test_a_session_past_its_validity_shows_it_is_over(self, acme, operator, admin):
        request = shell(acme, operator, admin)
        request.active_until = timezone.now() - timedelta(minutes=1)
        request.save()

        page = client_for(admin).get(url("request_detail", request)).content.decode()

        assert "its validity period is over" in page
        assert "End session now" not in page

"""Break-glass: an operator runs an allowed action at once, every admin is told, and an admin
reviews it afterwards (accept or flag); an unreviewed run is announced again after a day."""

import uuid
from datetime import timedelta

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied
from django.urls import reverse
from django.utils import timezone

from approvals import break_glass, services
from approvals.models import (
    ActionRequest,
    ApprovalMode,
    ApprovalSettings,
    Notification,
    RequestStatus,
    ReviewOutcome,
)
from audit.models import AuditEvent
from responseportal.models import Membership, Role

from .approvals_helpers import at_once, submit
from .conftest import client_for
from .test_approval_settings import form_data as settings_form

pytestmark = pytest.mark.django_db

REASON = "Ransomware spreading from this host to the file servers"


def allow_break_glass(organization, actions=("isolate_endpoint",), **changes):
    settings = ApprovalSettings.for_organization(organization)
    settings.break_glass_enabled = True
    settings.break_glass_actions = list(actions)
    for name, value in changes.items():
        setattr(settings, name, value)
    settings.save()
    return settings


def break_glass_run(organization, operator, justification=REASON, **kw):
    return submit(organization, operator, break_glass=True, justification=justification, **kw)


def verbs(action_request):
    return list(action_request.events.order_by("id").values_list("verb", flat=True))


def new_url(key="isolate_endpoint", slug="acme"):
    return reverse("new_request", args=[slug, key])


def post_new(client, data, key="isolate_endpoint"):
    return client.post(
        new_url(key),
        {"submission_token": str(uuid.uuid4()), "endpoints": "web-01", "description": "Beacon"}
        | data,
    )


def review_url(action_request, slug="acme"):
    return reverse("request_review", args=[slug, action_request.uuid])


# The approval settings


class TestSettings:
    def post(self, admin, acme, **changes):
        return client_for(admin).post(
            reverse("approval_settings", args=["acme"]), settings_form(acme, **changes)
        )

    def test_it_is_off_by_default_with_no_action_allowed(self, acme):
        settings = ApprovalSettings.for_organization(acme)
        assert (settings.break_glass_enabled, settings.break_glass_actions) == (False, [])

    def test_an_admin_allows_it_for_chosen_actions_and_it_is_audited(self, acme, admin):
        response = self.post(
            admin,
            acme,
            break_glass_enabled="on",
            break_glass_actions=["scan_for_malware", "isolate_endpoint"],
        )
        assert response.status_code == 302
        settings = ApprovalSettings.for_organization(acme)
        # Stored in the catalog's order, whatever the order of the ticks.
        assert settings.break_glass_enabled
        assert settings.break_glass_actions == ["isolate_endpoint", "scan_for_malware"]
        change = AuditEvent.objects.get(verb="settings.changed").data
        assert change["break_glass_enabled"] == {"before": False, "after": True}
        assert change["break_glass_actions"]["after"] == ["isolate_endpoint", "scan_for_malware"]

    @pytest.mark.parametrize(
        "changes,field,words",
        [
            ({"break_glass_enabled": "on"}, "break_glass_actions", "tick at least one action"),
            (
                {"break_glass_enabled": "on", "break_glass_actions": ["run_osquery"]},
                "break_glass_actions",
                "`run_osquery` is not an action that can break glass.",
            ),
            (
                {"break_glass_actions": ["isolate_endpoint", "no_such_action"]},
                "break_glass_actions",
                "`no_such_action` is not an action that can break glass.",
            ),
        ],
    )
    def test_bad_choices_are_named_and_nothing_is_saved(self, acme, admin, changes, field, words):
        response = self.post(admin, acme, **changes)
        assert response.status_code == 200
        assert any(words in error for error in response.context["form"].errors[field])
        assert not ApprovalSettings.objects.filter(organization=acme).exists()
        assert not AuditEvent.objects.filter(verb="settings.changed").exists()

    def test_the_page_offers_only_actions_that_can_break_glass(self, acme, admin):
        html = client_for(admin).get(reverse("approval_settings", args=["acme"])).content.decode()
        assert 'name="break_glass_enabled"' in html
        assert 'name="break_glass_actions" value="isolate_endpoint"' in html
        assert 'name="break_glass_actions" value="run_osquery"' not in html


# Submitting


class TestSubmit:
    def test_it_runs_at_once_audited_and_awaiting_review(
        self, acme, operator, admin, django_capture_on_commit_callbacks
    ):
        allow_break_glass(acme)
        with django_capture_on_commit_callbacks(execute=True):
            created = break_glass_run(acme, operator, justification=f"  {REASON}  \n")
        created.refresh_from_db()
        assert created.approval_mode == ApprovalMode.BREAK_GLASS
        assert created.status == RequestStatus.SUCCESSFUL
        assert created.expires_at is None and created.decided_by is None
        assert created.justification == REASON
        assert created.awaits_review
        assert verbs(created)[:2] == ["request.submitted", "request.break_glass"]
        event = created.events.get(verb="request.break_glass")
        assert (event.actor, event.data["justification"]) == (operator, REASON)

    def test_every_admin_and_extra_address_is_told_at_once_by_mail_and_webhook(
        self, acme, operator, admin, second_admin, django_capture_on_commit_callbacks
    ):
        allow_break_glass(
            acme,
            notify_emails=["soc@acme.test"],
            notify_webhook_url="https://hooks.example.com/portal",
        )
        with django_capture_on_commit_callbacks(execute=False):
            created = break_glass_run(acme, operator)
        notification = Notification.objects.get(request=created, kind="break_glass")
        assert notification.email_due and notification.webhook_due
        sent = services.notifications.build("break_glass", created)
        assert sorted(address for message in sent for address in message.to) == sorted(
            [admin.email, second_admin.email, "soc@acme.test"]
        )
        assert all(message.subject.startswith("[Response Portal] Break-glass") for message in sent)
        assert REASON in sent[0].body
        payload = services.notifications.webhook_payload("break_glass", created)
        assert b'"event": "break_glass"' in payload and REASON.encode() in payload

    @pytest.mark.parametrize(
        "settings_changes,key,endpoints,words",
        [
            ({"break_glass_enabled": False}, "isolate_endpoint", ["web-01"], "not allowed in this"),
            ({"break_glass_actions": ["scan_for_malware"]}, "isolate_endpoint", ["web-01"], "for"),
            ({"break_glass_actions": ["run_osquery"]}, "run_osquery", ["web-01"], "never break"),
            ({}, "link_workbench_alert", [], "only for Critical"),
            ({"scope_exceptions": ["db-01"]}, "isolate_endpoint", ["web-01", "db-01"], "db-01"),
        ],
    )
    def test_a_refused_break_glass_creates_nothing(
        self, acme, operator, settings_changes, key, endpoints, words
    ):
        allow_break_glass(acme, actions=["isolate_endpoint", "run_osquery"], **settings_changes)
        before = AuditEvent.objects.count()
        with pytest.raises(services.SubmissionRefused) as refused:
            break_glass_run(acme, operator, key=key, endpoints=endpoints)
        assert words in refused.value.message
        assert not ActionRequest.objects.exists()
        assert AuditEvent.objects.count() == before
        assert not Notification.objects.exists()

    @pytest.mark.parametrize(
        "justification,words",
        [
            ("Too short", "this one has 9"),
            (" " * 40 + "Too short" + "\n" * 30, "this one has 9"),
            ("Ransomware" + " " * 30 + "spread", "this one has 17"),
            ("Ransomware\u200b spreading to the file servers", "U+200B"),
            ("Ransomware\x00 spreading to the file servers", "U+0000"),
            ("\u00a0" * 25, "this one has 0"),
            ("x" * (break_glass.MAX_JUSTIFICATION + 1), "at most 2000"),
        ],
    )
    def test_a_bad_justification_is_refused_saying_why(self, acme, operator, justification, words):
        allow_break_glass(acme)
        with pytest.raises(services.SubmissionRefused) as refused:
            break_glass_run(acme, operator, justification=justification)
        assert words in refused.value.message
        assert not ActionRequest.objects.exists()

    def test_padding_spaces_count_once(self):
        with pytest.raises(Exception) as short:
            break_glass.cleaned_justification("a" + " " * 30 + "b")
        assert "this one has 3" in str(short.value)
        assert break_glass.cleaned_justification("  " + "a" * 20 + "  ") == "a" * 20

    def test_without_break_glass_the_justification_is_not_kept(self, acme, operator):
        allow_break_glass(acme)
        created = submit(acme, operator, justification=REASON)
        assert (created.approval_mode, created.justification) == (ApprovalMode.MANUAL, "")


# The request form


class TestForm:
    def test_the_fields_are_offered_only_where_break_glass_is_allowed(self, acme, operator):
        client = client_for(operator)
        assert b'name="break_glass"' not in client.get(new_url()).content
        allow_break_glass(acme)
        html = client.get(new_url()).content
        assert b'name="break_glass"' in html and b'name="justification"' in html
        assert b'name="break_glass"' not in client.get(new_url("scan_for_malware")).content

    def test_an_operator_breaks_glass_from_the_form(self, acme, operator, admin):
        allow_break_glass(acme)
        response = post_new(client_for(operator), {"break_glass": "on", "justification": REASON})
        created = ActionRequest.objects.get()
        assert response.status_code == 302
        assert response["Location"] == reverse("request_detail", args=["acme", created.uuid])
        assert created.approval_mode == ApprovalMode.BREAK_GLASS
        page = client_for(operator).get(response["Location"]).content.decode()
        assert "break-glass" in page and REASON in page and "Not reviewed yet" in page

    @pytest.mark.parametrize(
        "justification,words",
        [
            ("", "at least 20 characters"),
            ("   short  reason   ", "this one has 12"),
            ("Ransomware spreading\u2066 to the file servers", "U+2066"),
            ("Ransomware spreading\x00 to the file servers", "Null characters are not allowed"),
        ],
    )
    def test_a_bad_justification_is_named_on_the_form(self, acme, operator, justification, words):
        allow_break_glass(acme)
        response = post_new(
            client_for(operator), {"break_glass": "on", "justification": justification}
        )
        assert response.status_code == 200
        assert any(words in error for error in response.context["form"].errors["justification"])
        assert not ActionRequest.objects.exists()

    def test_break_glass_posted_where_not_allowed_is_refused_with_the_reason(self, acme, operator):
        response = post_new(client_for(operator), {"break_glass": "on", "justification": REASON})
        assert response.status_code == 200
        assert "Break-glass is not allowed in this organization" in " ".join(
            response.context["form"].non_field_errors()
        )
        assert not ActionRequest.objects.exists()

    def test_a_double_submit_creates_one_break_glass_run(self, acme, operator):
        allow_break_glass(acme)
        client = client_for(operator)
        data = {
            "submission_token": str(uuid.uuid4()),
            "endpoints": "web-01",
            "description": "Beacon",
            "break_glass": "on",
            "justification": REASON,
        }
        first = client.post(new_url(), data)
        second = client.post(new_url(), data)
        assert first["Location"] == second["Location"]
        assert ActionRequest.objects.count() == 1
        assert AuditEvent.objects.filter(verb="request.break_glass").count() == 1


# Reviewing


@pytest.fixture
def run(acme, operator):
    allow_break_glass(acme)
    return break_glass_run(acme, operator)


class TestReview:
    def test_an_admin_accepts_it_and_it_leaves_needs_review(self, acme, run, admin):
        services.review_request(run.pk, actor=admin, outcome="accept", comment=" Justified. ")
        run.refresh_from_db()
        assert (run.review_outcome, run.review_comment, run.reviewed_by) == (
            ReviewOutcome.ACCEPT,
            "Justified.",
            admin,
        )
        assert not run.awaits_review
        assert not break_glass.unreviewed(acme).exists()
        event = run.events.get(verb="request.reviewed")
        assert (event.actor, event.role, event.data) == (
            admin,
            "admin",
            {"outcome": "accept", "comment": "Justified."},
        )

    def test_flagging_needs_a_comment(self, run, admin):
        with pytest.raises(services.TransitionRefused) as refused:
            services.review_request(run.pk, actor=admin, outcome="flag", comment="   ")
        assert refused.value.message == services.REVIEW_COMMENT_REQUIRED
        run.refresh_from_db()
        assert run.awaits_review

    def test_a_second_review_is_refused_naming_the_first(self, run, admin, second_admin):
        services.review_request(run.pk, actor=admin, outcome="flag", comment="No emergency.")
        with pytest.raises(services.TransitionRefused) as refused:
            services.review_request(run.pk, actor=second_admin, outcome="accept")
        assert "already reviewed by acme-admin" in refused.value.message
        assert "flagged" in refused.value.message
        run.refresh_from_db()
        assert (run.review_outcome, run.reviewed_by) == (ReviewOutcome.FLAG, admin)
        assert run.events.filter(verb="request.reviewed").count() == 1

    def test_the_requester_never_reviews_their_own_run(self, acme, run, operator):
        Membership.objects.filter(user=operator, organization=acme).update(role=Role.ADMIN)
        with pytest.raises(services.TransitionRefused) as refused:
            services.review_request(run.pk, actor=operator, outcome="accept")
        assert "another admin must review it" in refused.value.message
        run.refresh_from_db()
        assert run.awaits_review

    @pytest.mark.parametrize("who", ["operator", "auditor", "outsider"])
    def test_only_admins_of_the_organization_review(self, cast, run, who):
        with pytest.raises(PermissionDenied):
            services.review_request(run.pk, actor=cast[who], outcome="accept")

    def test_a_request_that_did_not_break_glass_has_nothing_to_review(self, acme, operator, admin):
        pending = submit(acme, operator)
        with pytest.raises(services.TransitionRefused) as refused:
            services.review_request(pending.pk, actor=admin, outcome="accept")
        assert "did not break glass" in refused.value.message

    def test_an_unknown_outcome_is_refused(self, run, admin):
        with pytest.raises(services.TransitionRefused) as refused:
            services.review_request(run.pk, actor=admin, outcome="ACCEPT\x00")
        assert "expected accept or flag" in refused.value.message


class TestReviewPage:
    def test_an_admin_reviews_from_the_request_page(self, run, admin):
        client = client_for(admin)
        page = client.get(reverse("request_detail", args=["acme", run.uuid])).content.decode()
        assert 'action="' + review_url(run) + '"' in page
        response = client.post(review_url(run), {"outcome": "flag", "comment": "Not urgent."})
        assert response.status_code == 302
        run.refresh_from_db()
        assert run.review_outcome == ReviewOutcome.FLAG
        page = client.get(response["Location"]).content.decode()
        assert "Break-glass run flagged" in page and "Flagged by acme-admin" in page
        assert 'action="' + review_url(run) + '"' not in page

    @pytest.mark.parametrize(
        "data,words",
        [
            ({"comment": "fine"}, "Choose accept or flag."),
            ({"outcome": "approve"}, "`approve` is not a review outcome"),
            ({"outcome": "flag", "comment": ""}, "Give a comment when you flag"),
            ({"outcome": "accept", "comment": "ok\u202e"}, "U+202E"),
            ({"outcome": "accept", "comment": "ok\x00"}, "Null characters are not allowed"),
            ({"outcome": "accept", "comment": "x" * 2001}, "expected at most 2000"),
        ],
    )
    def test_bad_input_is_named_and_changes_nothing(self, run, admin, data, words):
        response = client_for(admin).post(review_url(run), data, follow=True)
        assert words in " ".join(str(message) for message in response.context["messages"])
        run.refresh_from_db()
        assert run.awaits_review
        assert not run.events.filter(verb="request.reviewed").exists()

    def test_a_double_click_reviews_once_and_says_what_happened(self, run, admin):
        client = client_for(admin)
        client.post(review_url(run), {"outcome": "accept"})
        response = client.post(review_url(run), {"outcome": "accept"}, follow=True)
        assert "already reviewed by acme-admin" in " ".join(
            str(message) for message in response.context["messages"]
        )
        assert run.events.filter(verb="request.reviewed").count() == 1

    @pytest.mark.parametrize(
        "who,status", [("operator", 403), ("auditor", 403), ("outsider", 404), ("admin", 302)]
    )
    def test_access(self, cast, run, who, status):
        response = client_for(cast[who]).post(review_url(run), {"outcome": "accept"})
        assert response.status_code == status

    def test_get_is_not_allowed(self, run, admin):
        assert client_for(admin).get(review_url(run)).status_code == 405

    def test_the_csrf_token_is_required(self, run, admin, csrf_client):
        csrf_client.force_login(admin)
        assert csrf_client.post(review_url(run), {"outcome": "accept"}).status_code == 403


class TestNeedsReview:
    def url(self, slug="acme"):
        return reverse("needs_review", args=[slug])

    @pytest.mark.parametrize(
        "who,status", [("admin", 200), ("operator", 403), ("auditor", 403), ("outsider", 404)]
    )
    def test_access(self, cast, who, status):
        assert client_for(cast[who]).get(self.url()).status_code == status

    def test_it_lists_unreviewed_runs_oldest_first_and_nothing_else(
        self, acme, globex, operator, admin, second_admin
    ):
        allow_break_glass(acme)
        older = break_glass_run(acme, operator, endpoints=["ws-old"])
        ActionRequest.objects.filter(pk=older.pk).update(
            submitted_at=timezone.now() - timedelta(hours=3)
        )
        newer = break_glass_run(acme, operator, endpoints=["ws-new"])
        reviewed = break_glass_run(acme, operator, endpoints=["ws-reviewed"])
        services.review_request(reviewed.pk, actor=second_admin, outcome="accept")
        submit(acme, operator, endpoints=["ws-pending"])
        page = client_for(admin).get(self.url())
        assert [r.uuid for r in page.context["page"].object_list] == [older.uuid, newer.uuid]
        html = page.content.decode()
        assert html.index(str(older.uuid)) < html.index(str(newer.uuid))
        assert str(reviewed.uuid) not in html

    def test_an_empty_list_says_so(self, admin):
        assert (
            b"No break-glass run waits for a review." in client_for(admin).get(self.url()).content
        )

    @pytest.mark.parametrize("rows", [1, 50])
    def test_queries_do_not_grow_with_rows(
        self, acme, operator, admin, rows, django_assert_max_num_queries
    ):
        allow_break_glass(acme)
        for n in range(rows):
            break_glass_run(acme, operator, endpoints=[f"ws-{n}"])
        client = client_for(admin)
        with django_assert_max_num_queries(5):
            response = client.get(self.url())
        assert len(response.context["page"].object_list) == rows

    def test_the_navigation_links_it_for_admins(self, admin, operator):
        response = client_for(admin).get(reverse("org_dashboard", args=["acme"]))
        assert {"label": "Needs review", "url": self.url()} in response.context["nav_items"]


class TestShownEverywhere:
    def test_the_request_list_and_the_dashboard_mark_it(self, acme, run, auditor, admin):
        listing = client_for(auditor).get(reverse("request_list", args=["acme"])).content
        assert b"break-glass" in listing and b"needs review" in listing
        dashboard = client_for(admin).get(reverse("org_dashboard", args=["acme"]))
        html = dashboard.content.decode()
        assert dashboard.context["unreviewed_count"] == 1
        assert 'id="unreviewed-break-glass"' in html
        assert reverse("request_detail", args=["acme", run.uuid]) in html
        services.review_request(run.pk, actor=admin, outcome="accept")
        dashboard = client_for(admin).get(reverse("org_dashboard", args=["acme"]))
        assert 'id="unreviewed-break-glass"' not in dashboard.content.decode()

    def test_the_audit_log_shows_the_break_glass_event(self, acme, run, auditor):
        page = client_for(auditor).get(reverse("audit_log", args=["acme"])).content.decode()
        assert "request.break_glass" in page


# The announcement, a day later


class TestOverdueReview:
    def test_it_is_announced_once_after_a_day_and_never_when_reviewed(
        self, acme, operator, admin, second_admin
    ):
        allow_break_glass(acme)
        moment = timezone.now().replace(microsecond=0)
        unreviewed = break_glass_run(acme, operator, endpoints=["ws-1"])
        reviewed = break_glass_run(acme, operator, endpoints=["ws-2"])
        ActionRequest.objects.update(submitted_at=moment)
        services.review_request(reviewed.pk, actor=second_admin, outcome="accept")

        day = timedelta(hours=24)
        assert break_glass.announce_overdue_reviews(now=moment + day - timedelta(seconds=1)) == 0
        assert break_glass.announce_overdue_reviews(now=moment + day) == 1
        assert break_glass.announce_overdue_reviews(now=moment + 2 * day) == 0

        unreviewed.refresh_from_db()
        assert unreviewed.review_reminded_at == moment + day
        assert list(
            Notification.objects.filter(kind="review_overdue").values_list("request", flat=True)
        ) == [unreviewed.pk]
        assert unreviewed.events.filter(verb="request.review_overdue").count() == 1
        assert not reviewed.events.filter(verb="request.review_overdue").exists()

    def test_the_announcement_goes_to_the_admins(
        self, acme, operator, admin, django_capture_on_commit_callbacks
    ):
        allow_break_glass(acme)
        run = break_glass_run(acme, operator)
        mail.outbox.clear()
        with django_capture_on_commit_callbacks(execute=True):
            break_glass.announce_overdue_reviews(now=run.submitted_at + timedelta(days=1))
        overdue = [m for m in mail.outbox if "still unreviewed" in m.subject]
        assert [m.to for m in overdue] == [[admin.email]]
        assert REASON in overdue[0].body

    def test_the_command_and_the_beat_job_do_it(self, acme, operator):
        from approvals.execution import tasks

        allow_break_glass(acme)
        run = break_glass_run(acme, operator)
        ActionRequest.objects.filter(pk=run.pk).update(
            submitted_at=timezone.now() - timedelta(days=2)
        )
        assert tasks.announce_overdue_reviews() == 1
        assert tasks.announce_overdue_reviews() == 0


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_two_ticks_at_once_announce_once(requires_postgresql, acme, operator, admin):
    allow_break_glass(acme)
    runs = [break_glass_run(acme, operator, endpoints=[f"ws-{n}"]) for n in range(5)]
    ActionRequest.objects.update(submitted_at=timezone.now() - timedelta(days=2))

    counts = at_once(break_glass.announce_overdue_reviews, runs=4)

    assert len(counts) == 4 and sum(counts) == len(runs)
    assert Notification.objects.filter(kind="review_overdue").count() == len(runs)
    assert AuditEvent.objects.filter(verb="request.review_overdue").count() == len(runs)


# The API: the same form fields and the same rule


def test_the_api_breaks_glass_with_the_same_rule(acme, operator):
    from api.tokens import create_token

    from .test_api_requests import Api, requests_url

    api = Api(create_token(operator, acme, name="SOAR")[1])
    body = {
        "action": "isolate_endpoint",
        "parameters": {
            "endpoints": ["web-01"],
            "description": "C2",
            "break_glass": True,
            "justification": REASON,
        },
    }
    refused = api.post(requests_url(), body)
    assert refused.status_code == 400
    assert (
        "Break-glass is not allowed in this organization" in refused.json()["errors"]["__all__"][0]
    )
    allow_break_glass(acme)
    short = api.post(
        requests_url(), {**body, "parameters": {**body["parameters"], "justification": "x"}}
    )
    assert (
        short.status_code == 400 and "this one has 1" in short.json()["errors"]["justification"][0]
    )
    assert not ActionRequest.objects.exists()
    created = api.post(requests_url(), body)
    assert created.status_code == 201
    run = ActionRequest.objects.get()
    assert (run.approval_mode, run.justification) == (ApprovalMode.BREAK_GLASS, REASON)

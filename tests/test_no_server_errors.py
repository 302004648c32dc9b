"""Hostile input to every POST of the request pages, the sign-in and the submission token gets a
message, never a 500, and changes nothing.

These run on SQLite and, with DATABASE_URL=postgres://…, on PostgreSQL, whose text refuses the
NUL byte that used to reach it (HTTP 500 from the decision views). The few that need two
database connections at once run on PostgreSQL only (SQLite's: tests/test_sqlite_concurrency.py).
"""

import threading
import uuid
from urllib.parse import urlencode

import pytest
from axes.models import AccessAttempt
from django.db import connection
from django.urls import reverse

from approvals import services
from approvals.decision_forms import MAX_REASON_LENGTH, ApproveForm, BulkDecisionForm
from approvals.models import ActionRequest, ApprovalSettings, RequestStatus
from audit.models import AuditEvent
from responseportal.models import Role

from .approvals_helpers import submit
from .conftest import client_for
from .factories import PASSWORD, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

LIMIT = 2_000  # characters, written here again so the test does not trust the code's constant

# Text no database column may receive: PostgreSQL's text has no NUL; a reason is bounded.
NUL_TEXT = {
    "a NUL alone": "\x00",
    "a NUL inside": "Not this host\x00",
    "a NUL after spaces": "   \x00   ",
    "a NUL in long text": "x" * 1_500 + "\x00" + "y" * 400,
}
TOO_LONG = {
    "one over the limit": "x" * (LIMIT + 1),
    "two megabytes": "r" * 2_000_000,
    "over the limit in non-ASCII": "é" * (LIMIT + 1),
    "over the limit in astral characters": "\U0001f512" * (LIMIT + 1),
}


def test_the_limit_is_two_thousand_characters():
    assert MAX_REASON_LENGTH == LIMIT


def request_events() -> int:
    """Events about requests (signing in, which the test client does, writes others)."""
    return AuditEvent.objects.exclude(request=None).count()


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def post(client, path, data, *, encoding):
    """POST as a browser's form would: urlencoded, or multipart like a form with a file."""
    if encoding == "urlencoded":
        return client.post(
            path,
            urlencode(data, doseq=True),
            content_type="application/x-www-form-urlencoded",
            follow=True,
        )
    return client.post(path, data, follow=True)


ENCODINGS = ["urlencoded", "multipart"]


@pytest.fixture
def pending(acme, operator):
    return submit(acme, operator, endpoints=["web-01.acme.test"])


def unchanged(action_request, events_before: int) -> None:
    action_request.refresh_from_db()
    assert action_request.status == RequestStatus.PENDING
    assert action_request.decision_reason == ""
    assert request_events() == events_before


def path(name, action_request=None):
    return reverse(name, args=["acme", action_request.uuid] if action_request else ["acme"])


class TestDecisionText:
    @pytest.mark.parametrize("encoding", ENCODINGS)
    @pytest.mark.parametrize("text", NUL_TEXT.values(), ids=NUL_TEXT.keys())
    @pytest.mark.parametrize(
        "view,field", [("request_approve", "comment"), ("request_reject", "reason")]
    )
    def test_a_nul_is_refused_by_name(self, admin, pending, view, field, text, encoding):
        before = request_events()
        response = post(client_for(admin), path(view, pending), {field: text}, encoding=encoding)
        assert response.status_code == 200
        assert messages_of(response) == [
            f"The {field} holds a NUL character (U+0000), which cannot be stored: "
            "expected text without it."
        ]
        unchanged(pending, before)

    @pytest.mark.parametrize("text", TOO_LONG.values(), ids=TOO_LONG.keys())
    @pytest.mark.parametrize(
        "view,field", [("request_approve", "comment"), ("request_reject", "reason")]
    )
    def test_more_than_two_thousand_characters_are_refused(self, admin, pending, view, field, text):
        before = request_events()
        response = post(
            client_for(admin), path(view, pending), {field: text}, encoding="urlencoded"
        )
        assert messages_of(response) == [
            f"The {field} is {len(text):,} characters long: expected at most 2,000 characters."
        ]
        unchanged(pending, before)

    @pytest.mark.parametrize(
        "view,field", [("request_approve", "comment"), ("request_reject", "reason")]
    )
    def test_two_thousand_characters_and_surrounding_spaces_are_kept(
        self, admin, pending, view, field
    ):
        text = "\u00e9" * LIMIT
        client_for(admin).post(path(view, pending), {field: f"  {text}\n"})
        pending.refresh_from_db()
        assert pending.decision_reason == text
        verb = "request.approved" if view == "request_approve" else "request.rejected"
        assert pending.events.get(verb=verb).data["reason"] == text

    def test_invisible_but_storable_characters_are_text(self, admin, pending):
        client_for(admin).post(path("request_reject", pending), {"reason": "No\u200b \u202eway"})
        pending.refresh_from_db()
        assert (pending.status, pending.decision_reason) == (
            RequestStatus.REJECTED,
            "No\u200b \u202eway",
        )

    def test_a_lone_surrogate_is_refused_by_the_form(self):
        # HTTP cannot carry one (Django decodes bodies with replacement characters), but a form
        # bound in code can, and no UTF-8 database text stores it.
        form = ApproveForm({"comment": "ok \ud800"})
        assert not form.is_valid()
        assert form.errors["comment"] == [
            "The comment holds U+D800, half of a UTF-16 pair, which cannot be stored: "
            "expected text of whole characters."
        ]

    @pytest.mark.parametrize("value", ["\x00", "/orgs/acme/queue/\x00", "/" + "n" * 2_001])
    def test_a_hostile_return_page_refuses_the_decision(self, admin, pending, value):
        before = request_events()
        response = client_for(admin).post(path("request_approve", pending), {"next": value})
        assert response.status_code == 302
        assert response["Location"] == path("request_detail", pending)
        unchanged(pending, before)

    def test_the_wrong_people_are_refused_before_the_form(self, cast, pending):
        for who, status in {"operator": 403, "auditor": 403, "outsider": 404}.items():
            response = client_for(cast[who]).post(
                path("request_reject", pending), {"reason": "\x00"}
            )
            assert response.status_code == status, who


class TestBulkDecisions:
    @pytest.fixture
    def ten(self, acme, operator):
        return [submit(acme, operator, endpoints=[f"h{n}.acme.test"]) for n in range(10)]

    def decide(self, admin, data, encoding="urlencoded"):
        return post(client_for(admin), path("queue"), data, encoding=encoding)

    def nothing_decided(self, ten, events_before):
        assert {r.status for r in ActionRequest.objects.filter(pk__in=[r.pk for r in ten])} == {
            RequestStatus.PENDING
        }
        assert request_events() == events_before

    @pytest.mark.parametrize("encoding", ENCODINGS)
    @pytest.mark.parametrize("text", NUL_TEXT.values(), ids=NUL_TEXT.keys())
    def test_a_nul_in_the_reason_rejects_nothing(self, admin, ten, text, encoding):
        before = request_events()
        requests = [str(r.uuid) for r in ten]
        response = self.decide(
            admin, {"decision": "reject", "reason": text, "requests": requests}, encoding
        )
        assert messages_of(response) == [
            "The reason holds a NUL character (U+0000), which cannot be stored: "
            "expected text without it."
        ]
        self.nothing_decided(ten, before)

    def test_a_two_megabyte_reason_for_ten_requests_writes_nothing(self, admin, ten):
        before = request_events()
        reason = "r" * 2_000_000
        response = self.decide(
            admin, {"decision": "reject", "reason": reason, "requests": [str(r.uuid) for r in ten]}
        )
        assert messages_of(response) == [
            "The reason is 2,000,000 characters long: expected at most 2,000 characters."
        ]
        self.nothing_decided(ten, before)

    @pytest.mark.parametrize(
        "decision", ["", "APPROVE", "approve\x00", "approve ", "delete", "ap" * 5_000]
    )
    def test_an_unknown_decision_decides_nothing(self, admin, ten, decision):
        before = request_events()
        response = self.decide(
            admin, {"decision": decision, "requests": [str(r.uuid) for r in ten]}
        )
        assert messages_of(response) == ["Choose Approve selected or Reject selected."]
        self.nothing_decided(ten, before)

    def test_more_than_a_hundred_requests_at_once_are_refused(self, admin, ten):
        before = request_events()
        chosen = [str(r.uuid) for r in ten] + [str(uuid.uuid4()) for _ in range(91)]
        response = self.decide(admin, {"decision": "approve", "requests": chosen})
        assert messages_of(response) == ["101 requests are selected: expected at most 100 at once."]
        self.nothing_decided(ten, before)

    def test_ids_that_are_not_ids_are_named_and_skipped(self, admin, ten):
        first = ten[0]
        hostile = ["\x00", f"{first.uuid}\x00", "\u202e" + str(first.uuid), "z" * 10_000]
        response = self.decide(
            admin, {"decision": "approve", "requests": [str(first.uuid), *hostile]}
        )
        shown = messages_of(response)
        assert shown[:4] == [
            "`\\x00` is not a request ID; it was skipped.",
            f"`{first.uuid}\\x00` is not a request ID; it was skipped.",
            f"`\\u202e{first.uuid}` is not a request ID; it was skipped.",
            f"`{'z' * 40}…` is not a request ID; it was skipped.",
        ]
        assert shown[4:] == ["Approved 1 request."]

    def test_other_spellings_of_one_id_decide_it_once(self, admin, ten):
        one = ten[0].uuid
        spellings = [str(one), str(one).upper(), one.hex, f"{{{one}}}", f"urn:uuid:{one}"]
        response = self.decide(admin, {"decision": "approve", "requests": spellings})
        assert messages_of(response) == ["Approved 1 request."]
        assert AuditEvent.objects.filter(verb="request.approved").count() == 1

    def test_only_hostile_ids_select_nothing(self, admin, ten):
        before = request_events()
        response = self.decide(admin, {"decision": "approve", "requests": ["\x00"]})
        assert messages_of(response) == [
            "`\\x00` is not a request ID; it was skipped.",
            "Select at least one request first.",
        ]
        self.nothing_decided(ten, before)

    def test_the_form_bounds_what_it_accepts(self):
        form = BulkDecisionForm(
            {"decision": "reject", "requests": [str(uuid.uuid4())], "reason": " "}
        )
        assert not form.is_valid()
        assert form.errors["reason"] == [services.REASON_REQUIRED]


class TestEndSession:
    @pytest.fixture
    def session(self, acme, operator, admin, django_capture_on_commit_callbacks):
        shell = submit(
            acme,
            operator,
            key="start_remote_shell",
            endpoints=["ws-1"],
            parameters={"endpoints": ["ws-1"], "reason": "Triage"},
        )
        with django_capture_on_commit_callbacks(execute=True):
            services.approve_request(shell.pk, actor=admin)
        shell.refresh_from_db()
        assert shell.shell_is_active
        return shell

    @pytest.mark.parametrize(
        "reason,expected",
        [
            *[
                (
                    text,
                    "The reason holds a NUL character (U+0000), which cannot be stored: "
                    "expected text without it.",
                )
                for text in NUL_TEXT.values()
            ],
            (
                "e" * (LIMIT + 1),
                "The reason is 2,001 characters long: expected at most 2,000 characters.",
            ),
            (" \n ", "Give a reason for ending the session: it is kept with the request."),
        ],
    )
    def test_a_hostile_reason_ends_nothing(self, admin, session, reason, expected):
        before = request_events()
        response = client_for(admin).post(
            path("end_session", session), {"reason": reason}, follow=True
        )
        assert messages_of(response) == [expected]
        session.refresh_from_db()
        assert (session.ended_at, session.end_reason) == (None, "")
        assert request_events() == before

    def test_a_reason_of_two_thousand_characters_ends_it(self, admin, session):
        client_for(admin).post(path("end_session", session), {"reason": "d" * LIMIT})
        session.refresh_from_db()
        assert session.end_reason == "d" * LIMIT


class TestSignIn:
    def sign_in(self, client, username, password=PASSWORD):
        return client.post(reverse("login"), {"username": username, "password": password})

    @pytest.mark.parametrize(
        "username,length",
        [
            ("u" * 151, 151),
            ("u" * 256, 256),
            ("u" * 100_000, 100_000),
            ("\u00e9" * 300, 300),
            # NFKC, which Django applies to usernames, turns each ligature into two letters.
            ("\ufb00" * 100, 200),
        ],
        ids=["151", "256", "100000", "300 non-ASCII", "100 ligatures"],
    )
    def test_a_username_longer_than_any_user_s_is_a_form_error(self, client, username, length):
        response = self.sign_in(client, username)
        assert response.status_code == 200
        assert response.context["form"].errors["username"] == [
            f"This username is {length} characters long: expected a portal username, "
            "at most 150 characters."
        ]
        assert not AccessAttempt.objects.exists()
        assert "_auth_user_id" not in client.session

    @pytest.mark.parametrize("username", ["\x00", "operator\x00", "\x00" * 300])
    def test_a_nul_in_the_username_is_a_form_error(self, client, operator, username):
        response = self.sign_in(client, username)
        assert response.status_code == 200
        assert (
            "This username holds a NUL character (U+0000): expected a portal username."
            in (response.context["form"].errors["username"])
        )
        assert "_auth_user_id" not in client.session

    def test_a_username_of_150_characters_is_looked_up(self, client):
        UserFactory(username="v" * 150)
        assert self.sign_in(client, "v" * 150).status_code == 302
        assert "_auth_user_id" in client.session

    def test_a_failed_sign_in_still_counts_towards_the_lockout(self, client, operator):
        self.sign_in(client, "operator", password="wrong")
        assert AccessAttempt.objects.get().username == "operator"

    def test_a_huge_password_is_an_ordinary_failure(self, client, operator):
        response = self.sign_in(client, "operator", password="p" * 1_000_000)
        assert response.status_code == 200
        assert "Please enter a correct username and password" in response.content.decode()


class TestSubmissionTokens:
    """A token makes a double click one request; it counts per user, organization and action,
    so the same token anywhere else makes that submission's own request, never a 500 or a
    redirect to someone else's."""

    FORM = {"endpoints": "ws-042", "description": "Beaconing"}

    @pytest.fixture
    def second_operator(self, acme):
        user = UserFactory(username="second-operator")
        MembershipFactory(user=user, organization=acme, role=Role.OPERATOR)
        return user

    def new(self, client, token, slug="acme", key="isolate_endpoint", **data):
        return client.post(
            reverse("new_request", args=[slug, key]),
            {**self.FORM, **data, "submission_token": token},
            follow=True,
        )

    def landed_on(self, response, action_request, slug="acme") -> None:
        assert response.redirect_chain == [
            (reverse("request_detail", args=[slug, action_request.uuid]), 302)
        ]
        assert messages_of(response)[0].startswith("Request submitted.")

    @pytest.mark.parametrize(
        "spelling",
        [
            str,
            lambda t: str(t).upper(),
            lambda t: t.hex,
            lambda t: f"{{{t}}}",
            lambda t: f"urn:uuid:{t}",
        ],
        ids=["canonical", "upper case", "no hyphens", "braces", "urn"],
    )
    def test_another_operator_s_token_makes_their_own_request(
        self, operator, second_operator, spelling
    ):
        token = uuid.uuid4()
        self.new(client_for(operator), str(token))
        first = ActionRequest.objects.get(requester=operator)
        theirs = client_for(second_operator)

        response = self.new(theirs, spelling(token), endpoints="ws-043")
        again = self.new(theirs, str(token), endpoints="ws-043")

        created = ActionRequest.objects.get(requester=second_operator)
        self.landed_on(response, created)
        self.landed_on(again, created)
        assert created.parameters["endpoints"] == ["ws-043"]
        first.refresh_from_db()
        assert (first.requester, first.parameters["endpoints"]) == (operator, ["ws-042"])
        assert ActionRequest.objects.count() == 2

    def test_a_token_used_in_another_organization_makes_a_request_there(
        self, operator, acme, globex
    ):
        MembershipFactory(user=operator, organization=globex, role=Role.OPERATOR)
        client, token = client_for(operator), str(uuid.uuid4())
        self.new(client, token)

        response = self.new(client, token, slug="globex")

        created = ActionRequest.objects.get(organization=globex)
        self.landed_on(response, created, slug="globex")
        assert created.requester == operator
        assert ActionRequest.objects.filter(organization=acme).count() == 1

    def test_a_token_used_for_another_action_makes_that_action_s_request(self, operator):
        client, token = client_for(operator), str(uuid.uuid4())
        self.new(client, token)
        self.new(client, token, key="scan_for_malware")
        assert sorted(ActionRequest.objects.values_list("action__key", flat=True)) == [
            "isolate_endpoint",
            "scan_for_malware",
        ]

    def test_a_double_click_in_any_spelling_makes_one_request(self, operator):
        client, token = client_for(operator), uuid.uuid4()
        answers = [self.new(client, spelling) for spelling in (str(token), token.hex)]
        created = ActionRequest.objects.get()
        for response in answers:
            self.landed_on(response, created)

    @pytest.mark.parametrize("token", ["\x00", "x" * 100_000, "", "not-a-token"])
    def test_a_malformed_token_is_refused(self, operator, token):
        response = self.new(client_for(operator), token)
        assert response.status_code == 200
        assert (
            "This form lost its submission token: reload the page and submit it again."
            in response.context["form"].non_field_errors()
        )
        assert not ActionRequest.objects.exists()

    def test_the_service_keeps_each_user_s_requests_apart(self, acme, operator, second_operator):
        token = uuid.uuid4()
        first = submit(acme, operator, submission_token=token)
        second = submit(acme, second_operator, submission_token=token)
        assert second.pk != first.pk
        assert submit(acme, second_operator, submission_token=token).pk == second.pk
        assert (first.requester, second.requester) == (operator, second_operator)


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("requires_postgresql")
class TestAtTheSameMomentOnPostgreSQL:
    """Two connections at once, which the SQLite test database cannot give."""

    def at_once(self, count, call) -> list:
        start = threading.Barrier(count)
        outcomes: list = []

        def run(n):
            try:
                start.wait()
                outcomes.append(call(n))
            except Exception as error:
                outcomes.append(error)
            finally:
                connection.close()

        threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        return outcomes

    def test_operators_racing_with_one_token_each_make_one_request(self, requires_postgresql, acme):
        operators = [UserFactory(username=f"operator-{n}") for n in range(5)]
        for user in operators:
            MembershipFactory(user=user, organization=acme, role=Role.OPERATOR)
        token = uuid.uuid4()

        # Each operator clicks twice, all ten submissions at the same moment.
        outcomes = self.at_once(
            10, lambda n: submit(acme, operators[n % 5], submission_token=token)
        )

        assert all(isinstance(o, ActionRequest) for o in outcomes), outcomes
        assert {o.requester_id for o in outcomes} == {user.pk for user in operators}
        for user in operators:
            assert len({o.pk for o in outcomes if o.requester_id == user.pk}) == 1
        assert ActionRequest.objects.count() == 5

    def test_first_settings_saves_at_once_keep_one(self, requires_postgresql, acme):
        admins = [UserFactory(username=f"admin-{n}") for n in range(10)]
        for user in admins:
            MembershipFactory(user=user, organization=acme, role=Role.ADMIN)

        def save(n):
            return services.update_approval_settings(
                acme, actor=admins[n], values={"pending_lifetime_hours": n + 1}, version=0
            )

        outcomes = self.at_once(10, save)

        saved = [o for o in outcomes if isinstance(o, ApprovalSettings)]
        stale = [o for o in outcomes if isinstance(o, services.StaleSettings)]
        assert (len(saved), len(stale)) == (1, 9), outcomes
        settings = ApprovalSettings.objects.get(organization=acme)
        assert (settings.version, settings.pending_lifetime_hours) == (
            1,
            saved[0].pending_lifetime_hours,
        )
        assert AuditEvent.objects.filter(verb="settings.changed").count() == 1

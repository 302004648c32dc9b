"""Browsing an organization's audit log, and one event of it."""

import re
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock
from urllib.parse import urlencode

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.chain import VERBS, chain_of, record
from audit.models import AuditEvent, Source

from .approvals_helpers import submit
from .conftest import client_for

pytestmark = pytest.mark.django_db

ACCESS = {"operator": 403, "admin": 200, "auditor": 200, "outsider": 404}


def log_url(**params):
    url = reverse("audit_log", args=["acme"])
    if params:
        url += "?" + urlencode(params)
    return url


def shown(response) -> list[int]:
    return [event.sequence for event in response.context["events"]]


def acme_sequences(**filters) -> list[int]:
    """The acme chain's sequences, newest first."""
    return list(
        AuditEvent.objects.filter(organization__slug="acme", **filters)
        .order_by("-sequence")
        .values_list("sequence", flat=True)
    )


def many(organization, count, verb="settings.changed", **kwargs):
    return [record(organization, verb, data={"n": n}, **kwargs) for n in range(count)]


@pytest.mark.parametrize("who", ACCESS)
def test_only_admins_and_auditors_of_the_organization_see_the_log(cast, acme, who):
    record(acme, "settings.changed")
    assert client_for(cast[who]).get(log_url()).status_code == ACCESS[who]


@pytest.mark.parametrize("who", ACCESS)
def test_only_admins_and_auditors_of_the_organization_see_an_event(cast, acme, who):
    event = record(acme, "settings.changed")
    url = reverse("audit_event", args=["acme", event.pk])
    assert client_for(cast[who]).get(url).status_code == ACCESS[who]


@pytest.mark.parametrize("name,args", [("audit_log", []), ("audit_event", [1])])
def test_anonymous_visitors_are_sent_to_sign_in(client, acme, name, args):
    response = client.get(reverse(name, args=["acme", *args]))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_an_event_of_another_organization_is_not_found(cast, globex):
    event = record(globex, "settings.changed")
    url = reverse("audit_event", args=["acme", event.pk])
    assert client_for(cast["admin"]).get(url).status_code == 404


def test_the_log_is_newest_first_fifty_to_a_page(auditor, acme):
    client = client_for(auditor)
    many(acme, 60)
    response = client.get(log_url())
    assert response.status_code == 200
    assert shown(response) == acme_sequences()[:50]
    assert response.context["older"] == shown(response)[-1]
    assert response.context["newer"] is None


def test_paging_back_and_forth_stays_right_while_events_arrive(admin, acme):
    client = client_for(admin)
    many(acme, 120)
    everything = acme_sequences()  # 121 events: the sign-in, then 120
    first = client.get(log_url())
    assert shown(first) == everything[:50]

    second = client.get(log_url(before=first.context["older"]))
    assert shown(second) == everything[50:100]

    many(acme, 7)  # arrive while the auditor reads page two
    third = client.get(log_url(before=second.context["older"]))
    assert shown(third) == everything[100:]
    assert third.context["older"] is None

    back = client.get(log_url(after=third.context["newer"]))
    assert shown(back) == everything[50:100]
    front = client.get(log_url(after=back.context["newer"]))
    newest_now = acme_sequences()
    assert shown(front) == newest_now[7:57][-50:] == everything[:50]
    assert front.context["newer"] == everything[0]
    latest = client.get(log_url(after=front.context["newer"]))
    assert shown(latest) == newest_now[:7]
    assert latest.context["newer"] is None
    assert latest.context["older"] == newest_now[6]


def test_the_page_links_carry_the_cursor_and_the_filters(admin, acme):
    client = client_for(admin)
    many(acme, 55)
    html = client.get(log_url(verb="settings.changed")).content.decode()
    older = acme_sequences(verb="settings.changed")[49]
    assert f"?verb=settings.changed&amp;before={older}" in html


def test_filters_combine(admin, acme, operator, globex):
    client = client_for(admin)
    request = submit(acme, operator)  # request.submitted by operator
    record(acme, "request.approved", actor=admin, role="admin", action_request=request)
    record(acme, "request.rejected", actor=admin, role="admin", action_request=request)
    record(acme, "request.approved", actor=admin, role="admin")
    record(globex, "request.approved", actor=admin, role="admin", action_request=request)
    wanted = AuditEvent.objects.get(verb="request.approved", request=request, organization=acme)

    response = client.get(
        log_url(request=request.uuid, actor="acme-admin", verb="request.approved")
    )
    assert shown(response) == [wanted.sequence]

    by_request = client.get(log_url(request=request.uuid))
    assert len(shown(by_request)) == 3
    by_actor = client.get(log_url(actor="acme-admin"))
    assert {e.verb for e in by_actor.context["events"]} == {
        "auth.signed_in",
        "request.approved",
        "request.rejected",
    }
    contains = client.get(log_url(actor="ADMIN", actor_match="contains", verb="request.rejected"))
    assert len(shown(contains)) == 1
    exact = client.get(log_url(actor="admin", verb="request.rejected"))
    assert shown(exact) == []
    by_action = client.get(log_url(action="isolate_endpoint"))
    assert len(shown(by_action)) == 3
    by_source = client.get(log_url(source=Source.SYSTEM, verb="request.approved"))
    assert len(shown(by_source)) == 2


def test_free_text_searches_verbs_usernames_actions_and_data(admin, acme):
    client = client_for(admin)
    record(acme, "settings.changed", data={"notify_emails": {"before": [], "after": ["soc@x"]}})
    record(acme, "script.uploaded", data={"name": "Collect-Evidence.ps1"})
    record(acme, "settings.changed", data={"pending_lifetime_hours": {"before": 1, "after": 2}})
    assert len(shown(client.get(log_url(q="collect-evidence")))) == 1
    assert len(shown(client.get(log_url(q="SOC@X")))) == 1
    assert len(shown(client.get(log_url(q="script.")))) == 1
    assert len(shown(client.get(log_url(q="acme-adm")))) == 1  # the sign-in


def test_the_time_range_is_read_and_shown_in_the_portals_time_zone(admin, acme, settings):
    settings.TIME_ZONE = "Europe/Paris"
    for hour in (7, 8, 10):  # UTC; 08:30, 09:30 and 11:30 in Paris
        moment = datetime(2025, 1, 15, hour, 30, tzinfo=UTC)
        with mock.patch("django.utils.timezone.now", return_value=moment):
            record(acme, "settings.changed", data={"hour": hour})
    client = client_for(admin)  # signs in now, after those events
    response = client.get(log_url(since="2025-01-15T09:00", until="2025-01-15T11:00"))
    assert [e.data for e in response.context["events"]] == [{"hour": 8}]
    assert "2025-01-15 09:30:00" in response.content.decode()
    assert "Europe/Paris" in response.content.decode()
    to_the_minute = client.get(log_url(until="2025-01-15T09:30"))
    assert [e.data for e in to_the_minute.context["events"]] == [{"hour": 8}, {"hour": 7}]
    since = client.get(log_url(since="2025-01-15T11:30"))
    assert [e.verb for e in since.context["events"]] == ["auth.signed_in", "settings.changed"]
    nothing = client.get(log_url(until="2025-01-15T08:00"))
    assert nothing.context["events"] == []
    assert "No events match" in nothing.content.decode()


@pytest.mark.parametrize(
    "params,message",
    [
        ({"before": "abc"}, "`abc` is not a position in the log"),
        ({"after": "-5"}, "`-5` is not a position in the log"),
        ({"before": "5", "after": "3"}, "either before or after"),
        ({"before": "²"}, "is not a position in the log"),
        ({"before": "9" * 40}, "is not a position in the log"),
        ({"since": "0001-01-01T00:00"}, "expected a year from 1970 to 9998"),
        ({"until": "9999-12-31T23:59"}, "expected a year from 1970 to 9998"),
        ({"since": "yesterday"}, "Expected a date and time"),
        ({"since": "2025-02-01T00:00", "until": "2025-01-01T00:00"}, "To must not be earlier"),
        ({"request": "not-a-uuid"}, "Expected a request ID"),
        ({"verb": "request.exploded"}, "Select a valid choice"),
        ({"source": "pigeon"}, "Select a valid choice"),
        ({"q": "x" * 201}, "at most 200 characters"),
    ],
)
def test_bad_values_are_explained_not_a_server_error(auditor, acme, params, message):
    response = client_for(auditor).get(log_url(**params))
    assert response.status_code == 400
    assert message in response.content.decode()
    assert response.context["events"] == []


def _queries_for_the_log(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(log_url()).status_code == 200
    return len(queries)


def test_a_page_costs_the_same_queries_with_one_event_as_with_fifty(
    admin, acme, operator, django_assert_max_num_queries
):
    client = client_for(admin)
    request = submit(acme, operator)
    one = _queries_for_the_log(client)
    assert one <= 6
    for n in range(49):
        record(acme, "settings.changed", action_request=request if n % 2 else None)
    with django_assert_max_num_queries(one):
        response = client.get(log_url())
    assert len(shown(response)) == 50
    with django_assert_max_num_queries(one + 1):  # + whether there are newer events
        client.get(log_url(before=shown(response)[-1]))


def test_the_event_page_shows_before_and_after_of_a_settings_change(admin, acme):
    client = client_for(admin)  # its sign-in is the event before
    event = record(
        acme,
        "settings.changed",
        actor=admin,
        role="admin",
        data={
            "pending_lifetime_hours": {"before": 72, "after": 24},
            "auto_approved_actions": {
                "before": ["isolate_endpoint", "kill_process"],
                "after": ["isolate_endpoint", "collect_file"],
            },
        },
    )
    response = client.get(reverse("audit_event", args=["acme", event.pk]))
    html = response.content.decode()
    assert response.context["changes"][1] == {
        "field": "pending_lifetime_hours",
        "before": "72",
        "after": "24",
    }
    assert "Added: collect_file" in html and "Removed: kill_process" in html
    assert event.hash in html and event.prev_hash in html
    assert "Its content matches its hash" in html
    assert "links to the event before it" in html


def test_the_event_page_shows_other_data_as_json(auditor, acme, operator):
    request = submit(acme, operator)
    event = request.events.get(verb="request.submitted")
    response = client_for(auditor).get(reverse("audit_event", args=["acme", event.pk]))
    html = response.content.decode()
    assert "&quot;approval_mode&quot;: &quot;manual&quot;" in html
    assert str(request.uuid) in html
    assert response.context["rest"].startswith("{\n")


def test_the_log_and_its_pages_need_no_inline_script(admin, acme):
    event = record(acme, "settings.changed")
    client = client_for(admin)
    for url in (log_url(), reverse("audit_event", args=["acme", event.pk])):
        html = client.get(url).content.decode()
        assert "<script>" not in html and "onclick" not in html


def test_the_chain_field_keeps_organizations_apart(admin, acme, globex):
    record(globex, "settings.changed", data={"secret": "globex"})
    response = client_for(admin).get(log_url(q="globex"))
    assert shown(response) == []
    assert AuditEvent.objects.filter(chain=chain_of(globex)).count() == 1


def test_the_verb_filter_offers_every_verb_the_code_writes():
    written = set()
    for folder in ("approvals", "actions", "audit", "responseportal"):
        for path in (Path(__file__).parents[1] / folder).rglob("*.py"):
            written |= set(
                re.findall(
                    r'"((?:request|execution|remote_shell|settings|scope|script|auth|audit)'
                    r'\.[a-z_]+)"',
                    path.read_text(),
                )
            )
    written.discard("audit.urls")  # a module named in `include`, not a verb
    assert "execution.succeeded" in written and "auth.signed_in" in written
    assert written <= set(VERBS)

"""Audit events over the API: who may read the audit page reads them, with its filters, in
keyset pages that stay put while events are added."""

import base64
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.cache import caches

from approvals import services
from audit.chain import record
from audit.context import AuditContext
from audit.models import AuditEvent, Source

from .approvals_helpers import submit
from .test_api_requests import api_for

URL = "/api/v1/orgs/acme/audit-events/"
ACCESS = {"operator": 403, "admin": 200, "auditor": 200}


@pytest.fixture(autouse=True)
def _fresh_rate_counts():
    caches["default"].clear()


def sequences(organization, **filters) -> list[int]:
    """The organization's events' sequences, newest first, straight from the table."""
    return list(
        AuditEvent.objects.filter(organization=organization, **filters)
        .order_by("-sequence")
        .values_list("sequence", flat=True)
    )


def listed(response) -> list[int]:
    assert response.status_code == 200, response.json()
    return [event["sequence"] for event in response.json()["results"]]


def cursor_of(link: str) -> str:
    return parse_qs(urlsplit(link).query)["cursor"][0]


@pytest.mark.parametrize("who", ACCESS)
def test_who_reads_the_audit_page_reads_the_events(cast, acme, who):
    record(acme, "settings.changed")
    assert api_for(cast[who], acme).get(URL).status_code == ACCESS[who]


def test_another_organizations_events_are_404_and_never_listed(auditor, outsider, acme, globex):
    record(globex, "settings.changed", data={"secret": "globex"})
    record(acme, "settings.changed")
    assert api_for(outsider, globex).get(URL).status_code == 404
    results = api_for(auditor, acme).get(URL).json()["results"]
    assert all("globex" not in str(event["data"]) for event in results)
    assert [e["sequence"] for e in results] == sequences(acme)


def test_an_event_reads_as_recorded(operator, auditor, acme):
    request = submit(
        acme,
        operator,
        context=AuditContext(source=Source.WEB, ip_address="192.0.2.7", user_agent="Firefox"),
    )
    event = AuditEvent.objects.get(verb="request.submitted")
    [shown] = api_for(auditor, acme).get(URL, {"verb": "request.submitted"}).json()["results"]
    assert shown == {
        "id": event.pk,
        "sequence": 1,
        "timestamp": event.timestamp.isoformat().replace("+00:00", "Z"),
        "actor": "operator",
        "role": "operator",
        "verb": "request.submitted",
        "request": str(request.uuid),
        "action": "isolate_endpoint",
        "data": event.data,
        "source": "web",
        "ip_address": "192.0.2.7",
        "user_agent": "Firefox",
        "prev_hash": "0" * 64,
        "hash": event.hash,
    }


def test_pages_by_cursor_newest_first_and_stay_put_when_events_are_added(auditor, acme):
    api = api_for(auditor, acme)  # its token's creation is the first event
    for n in range(6):
        record(acme, "settings.changed", data={"n": n})
    assert sequences(acme) == [7, 6, 5, 4, 3, 2, 1]
    first = api.get(URL, {"page_size": 3})
    assert listed(first) == [7, 6, 5]
    assert first.json()["previous"] is None
    record(acme, "settings.changed", data={"n": "new"})  # an 8th, while the reader pages
    second = api.get(URL, {"page_size": 3, "cursor": cursor_of(first.json()["next"])})
    assert listed(second) == [4, 3, 2]
    third = api.get(URL, {"page_size": 3, "cursor": cursor_of(second.json()["next"])})
    assert listed(third) == [1]
    assert third.json()["next"] is None


@pytest.mark.parametrize(
    ("params", "filters"),
    [
        ({"verb": "request.cancelled"}, {"verb": "request.cancelled"}),
        ({"actor": "operator"}, {"actor_username": "operator"}),
        ({"actor": "OPER", "actor_match": "contains"}, {"actor_username__icontains": "oper"}),
        ({"action": "scan_for_malware"}, {"action_key": "scan_for_malware"}),
        ({"source": "api"}, {"source": "api"}),
        ({"q": "web-02"}, {"data__icontains": "web-02"}),
    ],
)
def test_the_audit_pages_filters(operator, admin, auditor, acme, params, filters):
    submit(acme, operator, endpoints=["web-01.acme.test"])
    cancelled = submit(acme, operator, key="scan_for_malware", endpoints=["web-02.acme.test"])
    services.cancel_request(cancelled.pk, actor=operator)
    record(acme, "settings.changed", actor=admin, data={"pending_lifetime_hours": 1})
    api_for(operator, acme).post(
        "/api/v1/orgs/acme/requests/",
        {"action": "isolate_endpoint", "parameters": {"endpoints": "web-03", "description": "x"}},
    )
    if "data__icontains" in filters:
        expected = [
            e.sequence
            for e in AuditEvent.objects.filter(organization=acme).order_by("-sequence")
            if "web-02" in str(e.data)
        ]
    else:
        expected = sequences(acme, **filters)
    assert expected, "the filter must keep some events"
    assert expected != sequences(acme), "and leave some out"
    assert listed(api_for(auditor, acme).get(URL, params)) == expected


def test_the_request_filter(operator, auditor, acme):
    one = submit(acme, operator)
    submit(acme, operator)
    response = api_for(auditor, acme).get(URL, {"request": str(one.uuid)})
    assert listed(response) == sequences(acme, request=one)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"since": "2000-01-01T00:00"}, [3, 2, 1]),
        ({"until": "2000-01-01T00:00"}, []),
        ({"since": "9000-01-01"}, []),
        ({"since": "2000-01-01", "until": "9000-01-01T00:00:00"}, [3, 2, 1]),
    ],
)
def test_a_time_range(auditor, acme, params, expected):
    api = api_for(auditor, acme, name="reader")
    for n in range(2):
        record(acme, "settings.changed", data={"n": n})
    assert listed(api.get(URL, params)) == expected


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"verb": "request.nonsense"}, "verb"),
        ({"source": "carrier-pigeon"}, "source"),
        ({"request": "not-a-uuid"}, "request"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2025-02-01T00:00", "until": "2025-01-01T00:00"}, "until"),
        ({"since": "0001-01-01"}, "since"),
        ({"actor": "a" * 151}, "actor"),
        ({"q": "x" * 201}, "q"),
        ({"q": "nul\x00byte"}, "q"),
    ],
)
def test_a_bad_filter_is_400_with_the_pages_message(auditor, acme, params, field):
    record(acme, "settings.changed")
    response = api_for(auditor, acme).get(URL, params)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["errors"][field]


def test_the_page_cursors_of_the_html_page_are_ignored(auditor, acme):
    api = api_for(auditor, acme)
    for _ in range(2):
        record(acme, "settings.changed")
    assert listed(api.get(URL, {"before": "2", "after": "x"})) == [3, 2, 1]


@pytest.mark.parametrize("cursor", ["!!!", "cD0xJnI9MQ==\x00", "cD14", "é" * 300])
def test_a_forged_cursor_is_400(auditor, acme, cursor):
    record(acme, "settings.changed")
    response = api_for(auditor, acme).get(URL, {"cursor": cursor})
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert "cursor" in response.json()["errors"]


@pytest.mark.parametrize("rows", [1, 50])
def test_a_page_costs_the_same_queries_at_1_and_50_rows(
    operator, auditor, acme, rows, django_assert_max_num_queries
):
    for _ in range(rows):
        submit(acme, operator)
    api = api_for(auditor, acme)
    api.get(URL)
    # Token lookup and its last use, the membership, the page: never one per row.
    with django_assert_max_num_queries(8):
        assert api.get(URL).status_code == 200


def test_the_requests_list_refuses_a_cursor_that_is_not_a_time(operator, acme):
    forged = base64.b64encode(b"p=not-a-time").decode()
    response = api_for(operator, acme).get("/api/v1/orgs/acme/requests/", {"cursor": forged})
    assert response.status_code == 400
    assert "cursor" in response.json()["errors"]

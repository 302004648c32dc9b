"""The CSV export: the filtered events, streamed, with what an auditor needs to re-verify them."""

import csv
import hashlib
import io
import json
import re
from urllib.parse import urlencode

import pytest
from django.http import StreamingHttpResponse
from django.urls import reverse

from audit.chain import record
from audit.context import AuditContext
from audit.models import AuditEvent, Source

from .approvals_helpers import submit
from .conftest import client_for

pytestmark = pytest.mark.django_db

ACCESS = {"operator": 403, "admin": 200, "auditor": 200, "outsider": 404}
HASHED = (
    "chain",
    "sequence",
    "timestamp",
    "organization_id",
    "actor_id",
    "actor_username",
    "role",
    "verb",
    "request_id",
    "action_key",
    "data",
    "source",
    "ip_address",
    "user_agent",
    "prev_hash",
)


def export_url(**params):
    url = reverse("audit_export", args=["acme"])
    return url + ("?" + urlencode(params) if params else "")


def rows_of(response) -> list[dict]:
    assert isinstance(response, StreamingHttpResponse)
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def recomputed_hash(row: dict) -> str:
    """The hash from the CSV alone, as an auditor would compute it outside the portal."""

    def unescaped(value: str) -> str:
        # The README's rule: remove one `'` from every cell that starts with `'`.
        return value[1:] if value.startswith("'") else value

    values = {name: unescaped(row[name]) for name in HASHED}
    for name in ("sequence", "organization_id", "actor_id", "request_id"):
        values[name] = int(values[name]) if values[name] else None
    values["ip_address"] = values["ip_address"] or None
    values["data"] = json.loads(values["data"])
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("who", ACCESS)
def test_only_admins_and_auditors_of_the_organization_export(cast, acme, who):
    response = client_for(cast[who]).get(export_url())
    assert response.status_code == ACCESS[who]
    exported = AuditEvent.objects.filter(verb="audit.exported").exists()
    assert exported == (ACCESS[who] == 200)


def test_anonymous_visitors_are_sent_to_sign_in(client, acme):
    response = client.get(export_url())
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_it_streams_an_attachment_named_after_the_organization_and_time(auditor, acme):
    response = client_for(auditor).get(export_url())
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert re.fullmatch(
        r'attachment; filename="audit-acme-\d{8}T\d{6}Z\.csv"', response["Content-Disposition"]
    )
    assert response.streaming


def test_the_export_is_recorded_before_the_first_row_with_its_filters(auditor, acme):
    client = client_for(auditor)
    response = client.get(export_url(verb="request.approved", q="web-01"))
    event = AuditEvent.objects.get(verb="audit.exported")  # before reading the stream
    assert (event.actor, event.role, event.source) == (auditor, "auditor", Source.WEB)
    assert event.data == {"filters": {"verb": "request.approved", "q": "web-01"}}
    assert rows_of(response) == []


def test_every_hashed_field_is_there_to_re_verify_the_chain(admin, acme, operator):
    client = client_for(admin)
    request = submit(acme, operator, context=AuditContext(Source.WEB, "2001:db8::5", "UA"))
    record(acme, "settings.changed", actor=admin, data={"x": {"before": 1.0, "after": "é"}})
    rows = rows_of(client.get(export_url()))
    stored = list(AuditEvent.objects.filter(organization=acme).order_by("sequence"))
    assert [int(row["id"]) for row in rows] == [event.pk for event in stored[:-1]]  # not itself
    previous = "0" * 64
    for row in rows:
        assert recomputed_hash(row) == row["hash"]
        assert row["prev_hash"] == previous
        previous = row["hash"]
    submitted = next(row for row in rows if row["verb"] == "request.submitted")
    assert submitted["request"] == str(request.uuid)
    assert submitted["organization"] == "acme"
    assert submitted["ip_address"] == "2001:db8::5"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", submitted["timestamp"])


def test_the_export_holds_the_same_events_as_the_filtered_page(admin, acme):
    client = client_for(admin)
    for n in range(30):
        verb = "request.approved" if n % 3 else "request.rejected"
        record(acme, verb, actor=admin, role="admin", data={"n": n})
    filters = {"verb": "request.approved", "actor": "acme-admin"}
    page = client.get(reverse("audit_log", args=["acme"]), filters)
    exported = rows_of(client.get(export_url(**filters)))
    assert [int(row["id"]) for row in exported] == [e.pk for e in page.context["events"]][::-1]
    assert len(exported) == 20


def test_text_cells_starting_with_formula_characters_get_a_quote(admin, acme):
    record(
        acme,
        "settings.changed",
        actor_username="=HYPERLINK(1)",
        context=AuditContext(Source.WEB, "192.0.2.1", "\tTabbed"),
    )
    record(acme, "settings.changed", role="-admin", data={"reason": "@risk"})
    rows = rows_of(client_for(admin).get(export_url(verb="settings.changed")))
    assert (rows[0]["actor_username"], rows[0]["user_agent"]) == ("'=HYPERLINK(1)", "'\tTabbed")
    assert (rows[1]["role"], rows[1]["data"]) == ("'-admin", '{"reason":"@risk"}')
    for row in rows:
        assert re.fullmatch(r"[0-9a-f]{64}", row["hash"]) and row["sequence"].isdigit()
        assert recomputed_hash(row) == row["hash"]


def test_bad_filters_are_explained_and_nothing_is_exported(auditor, acme):
    response = client_for(auditor).get(export_url(request="nope"))
    assert response.status_code == 400
    assert "Expected a request ID" in response.content.decode()
    assert not AuditEvent.objects.filter(verb="audit.exported").exists()


def test_the_log_page_links_to_the_export_of_what_it_shows(admin, acme):
    html = client_for(admin).get(reverse("audit_log", args=["acme"]), {"verb": "request.approved"})
    assert 'href="/orgs/acme/audit/export.csv?verb=request.approved"' in html.content.decode()

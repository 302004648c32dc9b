"""The approval settings' Preview: what the settings in the form would have done to the last
30 days of requests, decided again by the portal's own rule, without saving anything."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from approvals import decision, preview
from approvals.models import ActionRequest, ApprovalSettings
from audit.models import AuditEvent

from .approvals_helpers import submit, turn_on_auto_approval
from .conftest import client_for
from .test_approval_settings import form_data

pytestmark = pytest.mark.django_db

SETTINGS = "/orgs/acme/settings/approval/"


def table(response) -> dict[str, tuple]:
    """{action key: (requests, at once, waited, refused, several admins, changed)}, each
    outcome as (actually, with these settings)."""
    return {
        row.action.key: (
            row.requests,
            (row.actual.at_once, row.new.at_once),
            (row.actual.waited, row.new.waited),
            (row.actual.refused, row.new.refused),
            (row.actual.several_admins, row.new.several_admins),
            row.changed,
        )
        for row in response.context["preview"].rows
    }


@pytest.fixture
def history(acme, operator):
    """Six requests of the last 30 days, and one older: auto-approval off, one exception."""
    settings = turn_on_auto_approval(acme, auto_approved_actions=["run_osquery"])
    submit(
        acme,
        operator,
        key="run_osquery",
        endpoints=["web-01.acme.test"],
        parameters={"endpoints": ["web-01.acme.test"], "query": "SELECT 1"},
    )  # ran at once
    settings.auto_approval_enabled = False
    settings.scope_exceptions = ["db-01.acme.test"]
    settings.save()
    for endpoint in ("web-01.acme.test", "web-02.acme.test", "db-01.acme.test"):
        submit(acme, operator, endpoints=[endpoint])  # each waited
    submit(acme, operator, key="scan_for_malware", endpoints=["web-03.acme.test"])  # waited
    submit(acme, operator, key="link_workbench_alert", endpoints=())  # needs no approval
    old = submit(acme, operator, endpoints=["web-09.acme.test"])
    ActionRequest.objects.filter(pk=old.pk).update(
        submitted_at=timezone.now() - timedelta(days=30, minutes=1)
    )
    return settings


def test_with_no_history_it_says_so(acme, admin):
    response = client_for(admin).post(SETTINGS, {**form_data(acme), "preview": "1"})
    assert response.status_code == 200
    html = response.content.decode()
    assert (
        "No requests in the last 30 days: there is no history to preview these settings "
        "against." in html
    )
    assert "Nothing was saved." in html
    assert not ApprovalSettings.objects.filter(organization=acme).exists()


def test_turning_automatic_approval_on_shows_what_would_have_run_at_once(history, acme, admin):
    data = form_data(
        acme, auto_approval_enabled="on", auto_approved_actions=["isolate_endpoint"], preview="1"
    )
    response = client_for(admin).post(SETTINGS, data)
    assert table(response) == {
        # web-01 and web-02 would have run at once; db-01 is an exception, so it still waits.
        "isolate_endpoint": (3, (0, 2), (3, 1), (0, 0), (0, 0), 2),
        "scan_for_malware": (1, (0, 0), (1, 1), (0, 0), (0, 0), 0),
        # Needs automatic approval, and is no longer ticked: it would have been refused.
        "run_osquery": (1, (1, 0), (0, 0), (0, 1), (0, 0), 1),
        "link_workbench_alert": (1, (1, 1), (0, 0), (0, 0), (0, 0), 0),
    }
    html = response.content.decode()
    assert "3 of 6 requests would have gone differently." in html
    row = re.search(
        r'<tr data-action="isolate_endpoint" class="table-warning">(.*?)</tr>', html, re.S
    )
    assert row is not None
    cells = re.findall(r'<td data-outcome="(\w+)">([^<]*)', row.group(1))
    assert cells == [
        ("at_once", "0 → 2"),
        ("waited", "3 → 1"),
        ("refused", "0 → 0"),
        ("changed", "2 would change"),
    ]


def test_two_person_approval_shows_how_many_would_have_waited_for_two_admins(history, acme, admin):
    data = form_data(acme, approvals_needed__isolate_endpoint="2", preview="1")
    rows = table(client_for(admin).post(SETTINGS, data))
    assert rows["isolate_endpoint"] == (3, (0, 0), (3, 3), (0, 0), (0, 3), 3)
    assert rows["scan_for_malware"][-1] == 0


def test_the_preview_follows_the_ticks(history, acme, admin):
    client = client_for(admin)
    both = form_data(
        acme,
        auto_approval_enabled="on",
        auto_approved_actions=["isolate_endpoint", "scan_for_malware", "run_osquery"],
        preview="1",
    )
    rows = table(client.post(SETTINGS, both))
    assert rows["scan_for_malware"][1] == (0, 1)
    assert rows["run_osquery"][1] == (1, 1)
    assert rows["run_osquery"][-1] == 0
    # The form comes back as submitted, ticks and all, for saving or changing.
    form = client.post(SETTINGS, both).context["form"]
    assert form["auto_approved_actions"].value() == [
        "isolate_endpoint",
        "scan_for_malware",
        "run_osquery",
    ]


def test_previewing_changes_nothing(history, acme, admin):
    client = client_for(admin)
    client.get(SETTINGS)  # signed in (and audited as such) before counting
    before = ApprovalSettings.objects.get(organization=acme)
    events = AuditEvent.objects.count()
    requests = list(ActionRequest.objects.order_by("pk").values())
    data = form_data(
        acme,
        auto_approval_enabled="on",
        auto_approved_actions=["isolate_endpoint"],
        approvals_needed__scan_for_malware="3",
        preview="1",
    )
    response = client.post(SETTINGS, data)
    assert response.status_code == 200
    after = ApprovalSettings.objects.get(organization=acme)
    assert (after.version, after.updated_at) == (before.version, before.updated_at)
    assert (after.auto_approval_enabled, after.approvals_needed) == (False, {})
    assert AuditEvent.objects.count() == events
    assert list(ActionRequest.objects.order_by("pk").values()) == requests
    assert [str(m) for m in response.context["messages"]] == []


def test_saving_still_works_after_previewing(history, acme, admin):
    client = client_for(admin)
    data = form_data(acme, auto_approval_enabled="on", auto_approved_actions=["isolate_endpoint"])
    client.post(SETTINGS, {**data, "preview": "1"})
    saved = client.post(SETTINGS, data, follow=True)
    assert [str(m) for m in saved.context["messages"]] == ["Approval settings saved."]
    settings = ApprovalSettings.objects.get(organization=acme)
    assert (settings.auto_approval_enabled, settings.auto_approved_actions) == (
        True,
        ["isolate_endpoint"],
    )
    assert settings.version == history.version + 1


def test_bad_settings_are_not_previewed(history, acme, admin):
    data = form_data(acme, approvals_needed__isolate_endpoint="4", preview="1")
    response = client_for(admin).post(SETTINGS, data)
    assert response.context["preview"] is None
    assert response.context["form"].errors["approvals_needed__isolate_endpoint"]
    assert "Preview: these settings" not in response.content.decode()


@pytest.mark.parametrize("who,status", [("operator", 403), ("auditor", 403), ("outsider", 404)])
def test_only_the_organizations_admins_preview(cast, acme, history, who, status):
    response = client_for(cast[who]).post(SETTINGS, {**form_data(acme), "preview": "1"})
    assert response.status_code == status


def test_readers_get_no_preview_button(auditor):
    assert b'name="preview"' not in client_for(auditor).get(SETTINGS).content


def test_the_preview_button_submits_the_field_preview(admin):
    html = client_for(admin).get(SETTINGS).content.decode()
    assert re.search(r'<button type="submit" name="preview" value="1"[^>]*>Preview</button>', html)


def test_it_costs_the_same_queries_for_one_request_or_fifty(
    acme, operator, admin, django_assert_max_num_queries
):
    client = client_for(admin)
    data = {**form_data(acme), "preview": "1"}
    submit(acme, operator)
    with django_assert_max_num_queries(20) as one:
        client.post(SETTINGS, data)
    for n in range(49):
        submit(acme, operator, key="scan_for_malware", endpoints=[f"ws-{n}", f"10.0.1.{n}"])
    with django_assert_max_num_queries(len(one.captured_queries)):
        response = client.post(SETTINGS, data)
    assert response.context["preview"].requests == 50


def test_the_preview_decides_with_the_portals_own_rule():
    assert preview.decide is decision.decide


def test_a_break_glass_run_is_decided_again_as_break_glass(acme, operator, admin):
    settings = ApprovalSettings.for_organization(acme)
    settings.break_glass_enabled = True
    settings.break_glass_actions = ["isolate_endpoint"]
    settings.save()
    submit(
        acme,
        operator,
        break_glass=True,
        justification="Ransomware spreading from this host right now",
    )
    client = client_for(admin)
    allowed = form_data(
        acme, break_glass_enabled="on", break_glass_actions=["isolate_endpoint"], preview="1"
    )
    assert table(client.post(SETTINGS, allowed))["isolate_endpoint"] == (
        1,
        (1, 1),
        (0, 0),
        (0, 0),
        (0, 0),
        0,
    )
    # Break-glass turned off: the same run would have been refused on its form.
    turned_off = form_data(acme, break_glass_actions=["isolate_endpoint"], preview="1")
    assert table(client.post(SETTINGS, turned_off))["isolate_endpoint"] == (
        1,
        (1, 0),
        (0, 0),
        (0, 1),
        (0, 0),
        1,
    )

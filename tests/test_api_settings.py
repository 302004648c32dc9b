"""Approval settings over the API: read with an ETag, change with If-Match through the settings
page's own form and service, so the API refuses what the page refuses, with its messages."""

import threading

import pytest
from django.core.cache import caches
from django.db import connection

from actions.models import Category, ResponseAction
from approvals.models import ApprovalSettings, ScopeMode
from audit.models import AuditEvent
from responseportal.models import Role

from .conftest import client_for
from .factories import MembershipFactory, UserFactory
from .test_api_requests import api_for

URL = "/api/v1/orgs/acme/settings/approval/"


@pytest.fixture(autouse=True)
def _fresh_rate_counts():
    caches["default"].clear()


def approval_actions() -> list[str]:
    return list(
        ResponseAction.objects.filter(
            active=True, category__in=[Category.CRITICAL, Category.RECOMMENDED]
        )
        .order_by("position")
        .values_list("key", flat=True)
    )


def change(api, body, *, method="patch", etag=None):
    headers = dict(api.headers)
    if etag is not None:
        headers["HTTP_IF_MATCH"] = etag
    send = getattr(api.client, method)
    return send(URL, body, content_type="application/json", **headers)


def etag_of(api) -> str:
    return api.get(URL)["ETag"]


def stored(organization) -> ApprovalSettings:
    return ApprovalSettings.for_organization(organization)


# Reading


@pytest.mark.parametrize("who", ["operator", "admin", "auditor"])
def test_every_member_reads_the_settings_with_an_etag(cast, acme, who):
    response = api_for(cast[who], acme).get(URL)
    assert response.status_code == 200
    assert response["ETag"] == '"approval-settings-0"'
    body = response.json()
    assert body["version"] == 0
    settings = body["settings"]
    # A new organization: the master switch off, every action ticked, all endpoints.
    assert settings["auto_approval_enabled"] is False
    assert settings["auto_approved_actions"] == approval_actions()
    assert settings["scope_mode"] == "all"
    assert settings["pending_lifetime_hours"] == 72
    assert settings["remote_shell_validity_hours"] == 4
    assert settings["notify_emails"] == []
    assert settings["scope_selected"] == [] and settings["scope_exceptions"] == []
    assert "version" not in settings and "scope_selected_csv" not in settings


def test_only_admins_read_the_webhook_address_in_full(operator, admin, acme):
    ApprovalSettings.objects.create(
        organization=acme, notify_webhook_url="https://soar.example.com/hooks/s3cr3t-path"
    )
    full = api_for(admin, acme).get(URL).json()["settings"]["notify_webhook_url"]
    masked = api_for(operator, acme).get(URL).json()["settings"]["notify_webhook_url"]
    assert full == "https://soar.example.com/hooks/s3cr3t-path"
    assert "s3cr3t" not in masked and "soar.example.com" in masked


def test_the_etag_follows_every_save_of_the_page(admin, acme):
    api = api_for(admin, acme)
    assert etag_of(api) == '"approval-settings-0"'
    ApprovalSettings.objects.create(organization=acme, version=5)
    assert etag_of(api) == '"approval-settings-5"'


# Changing


def test_an_admin_changes_a_setting_and_the_event_names_the_api_and_token(admin, acme):
    api = api_for(admin, acme, name="terraform")
    response = change(
        api, {"auto_approval_enabled": True, "pending_lifetime_hours": 24}, etag=etag_of(api)
    )
    assert response.status_code == 200, response.json()
    assert response["ETag"] == '"approval-settings-1"'
    assert response.json()["settings"]["pending_lifetime_hours"] == 24
    saved = stored(acme)
    assert saved.auto_approval_enabled is True and saved.pending_lifetime_hours == 24
    # PATCH keeps what it does not name.
    assert saved.auto_approved_actions == approval_actions()
    event = AuditEvent.objects.get(verb="settings.changed")
    assert event.source == "api" and event.data["api_token"] == "terraform"
    assert event.actor_username == "acme-admin"
    assert event.data["pending_lifetime_hours"] == {"before": 72, "after": 24}
    assert event.data["auto_approval_enabled"] == {"before": False, "after": True}


def test_the_same_change_twice_saves_once(admin, acme):
    api = api_for(admin, acme)
    first = change(api, {"pending_lifetime_hours": 48}, etag=etag_of(api))
    again = change(api, {"pending_lifetime_hours": 48}, etag=first["ETag"])
    assert again.status_code == 200 and again["ETag"] == first["ETag"]
    assert AuditEvent.objects.filter(verb="settings.changed").count() == 1


def test_put_needs_every_setting(admin, acme):
    api = api_for(admin, acme)
    response = change(api, {"pending_lifetime_hours": 24}, method="put", etag=etag_of(api))
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert "auto_approval_enabled" in errors and "scope_selected" in errors
    assert "pending_lifetime_hours" not in errors
    whole = api.get(URL).json()["settings"]
    whole["remote_shell_validity_hours"] = 8
    response = change(api, whole, method="put", etag=etag_of(api))
    assert response.status_code == 200, response.json()
    assert stored(acme).remote_shell_validity_hours == 8
    assert stored(acme).pending_lifetime_hours == 72


def test_endpoint_lists_go_through_the_pages_import(admin, acme):
    api = api_for(admin, acme)
    response = change(
        api,
        {"scope_mode": "selected", "scope_selected": ["WEB-01.acme.test", "web-01.acme.test"]},
        etag=etag_of(api),
    )
    assert response.status_code == 200, response.json()
    saved = stored(acme)
    assert saved.scope_mode == ScopeMode.SELECTED
    assert saved.scope_selected == ["web-01.acme.test"]
    assert AuditEvent.objects.filter(verb="scope.imported", source="api").count() == 1
    # An empty list removes them all; the page refuses selected-only with none.
    response = change(api, {"scope_selected": []}, etag=response["ETag"])
    assert response.status_code == 400
    assert "at least one endpoint" in response.json()["errors"]["scope_mode"][0]
    assert stored(acme).scope_selected == ["web-01.acme.test"]


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({"pending_lifetime_hours": 0}, "pending_lifetime_hours", "at least 1 hour"),
        ({"pending_lifetime_hours": 721}, "pending_lifetime_hours", "at most 720 hours"),
        ({"pending_lifetime_hours": "72\x00"}, "pending_lifetime_hours", None),
        ({"pending_lifetime_hours": True}, "pending_lifetime_hours", "whole number"),
        ({"pending_lifetime_hours": "9" * 5000}, "pending_lifetime_hours", None),
        ({"auto_approval_enabled": "yes"}, "auto_approval_enabled", "true or false"),
        ({"auto_approved_actions": ["no_such_action"]}, "auto_approved_actions", "no_such"),
        ({"auto_approved_actions": "isolate_endpoint"}, "auto_approved_actions", "a list"),
        (
            {"auto_approval_enabled": True, "auto_approved_actions": []},
            "auto_approved_actions",
            "tick at least one action",
        ),
        ({"scope_mode": "everything"}, "scope_mode", None),
        ({"notify_emails": ["soc@example.com", "not an address"]}, "notify_emails", "Line 2"),
        ({"notify_emails": ["soc\u200b@example.com"]}, "notify_emails", None),
        ({"notify_webhook_url": "http://10.0.0.1/hook"}, "notify_webhook_url", None),
        ({"scope_exceptions": ["web-01", "not a host!"]}, "scope_exceptions", "Line 2"),
        ({"scope_exceptions": ["web-01,web-02"]}, "scope_exceptions", None),
        ({"scope_exceptions": ["web-01\nweb-02"]}, "scope_exceptions", None),
        ({"scope_exceptions": "web-01"}, "scope_exceptions", "list of endpoints"),
        ({"no_such_setting": 1}, "no_such_setting", "not an approval setting"),
    ],
)
def test_the_forms_messages_per_field_and_nothing_changes(admin, acme, body, field, fragment):
    api = api_for(admin, acme)
    response = change(api, body, etag=etag_of(api))
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    errors = response.json()["errors"]
    assert errors.get(field), errors
    if fragment:
        assert fragment in " ".join(errors[field])
    assert not ApprovalSettings.objects.filter(organization=acme).exists()
    assert not AuditEvent.objects.filter(verb__in=["settings.changed", "scope.imported"]).exists()


@pytest.mark.parametrize("body", [[1, 2], "text", None])
def test_a_body_that_is_not_an_object_is_refused(admin, acme, body):
    api = api_for(admin, acme)
    response = change(api, body, etag=etag_of(api))
    assert response.status_code == 400
    assert not ApprovalSettings.objects.filter(organization=acme).exists()


# If-Match


def test_a_change_without_if_match_is_428(admin, acme):
    api = api_for(admin, acme)
    for header in (None, "", "  "):
        response = change(api, {"pending_lifetime_hours": 24}, etag=header)
        assert response.status_code == 428
        assert response["Content-Type"] == "application/problem+json"
        assert "If-Match" in response.json()["detail"]
        assert response.json()["current_etag"] == '"approval-settings-0"'
    assert not ApprovalSettings.objects.filter(organization=acme).exists()


def test_a_stale_etag_is_412_saying_who_changed_what_and_when(admin, acme):
    mine, theirs = api_for(admin, acme, name="mine"), api_for(admin, acme, name="theirs")
    read = etag_of(mine)
    theirs_change = {"pending_lifetime_hours": 12, "scope_exceptions": ["dc-01", "dc-02"]}
    assert change(theirs, theirs_change, etag=etag_of(theirs)).status_code == 200
    response = change(mine, {"pending_lifetime_hours": 96}, etag=read)
    assert response.status_code == 412
    body = response.json()
    assert body["current_etag"] == '"approval-settings-1"'
    last = body["last_change"]
    assert last["actor"] == "acme-admin" and last["source"] == "api"
    # The whole of that save: the imported list and the changed setting.
    assert [e["verb"] for e in last["events"]] == ["scope.imported", "settings.changed"]
    imported, changed = (e["data"] for e in last["events"])
    assert imported["added"] == ["dc-01", "dc-02"] and imported["list"] == "scope_exceptions"
    assert changed["pending_lifetime_hours"] == {"before": 72, "after": 12}
    assert changed["api_token"] == "theirs"
    assert body["updated_at"] in body["detail"]
    assert stored(acme).pending_lifetime_hours == 12


def test_the_last_change_is_the_last_save_only(admin, acme):
    api = api_for(admin, acme)
    first = change(api, {"pending_lifetime_hours": 12}, etag=etag_of(api))
    second = change(api, {"scope_exceptions": ["dc-01"]}, etag=first["ETag"])
    third = change(
        api, {"scope_exceptions": ["dc-02"], "pending_lifetime_hours": 6}, etag=second["ETag"]
    )
    assert third.status_code == 200
    response = change(api, {"pending_lifetime_hours": 96}, etag=first["ETag"])
    assert response.status_code == 412
    events = response.json()["last_change"]["events"]
    assert [e["verb"] for e in events] == ["scope.imported", "settings.changed"]
    assert events[0]["data"]["added"] == ["dc-02"]
    assert events[1]["data"]["pending_lifetime_hours"] == {"before": 12, "after": 6}


@pytest.mark.parametrize(
    "header",
    [
        '"approval-settings-7"',
        "approval-settings-0",
        'W/"approval-settings-0"',
        '"APPROVAL-SETTINGS-0"',
        '"approval-settings-٠"',  # an Arabic-Indic zero
        '"approval-settings-0\x00"',
        "*",
        '"' + "9" * 5000 + '"',
    ],
)
def test_anything_but_the_current_etag_is_412(admin, acme, header):
    api = api_for(admin, acme)
    response = change(api, {"pending_lifetime_hours": 24}, etag=header)
    assert response.status_code == 412
    assert response.json()["current_etag"] == '"approval-settings-0"'
    assert not ApprovalSettings.objects.filter(organization=acme).exists()


def test_a_list_of_etags_with_the_current_one_matches(admin, acme):
    api = api_for(admin, acme)
    etag = f'"approval-settings-9", {etag_of(api)}'
    assert change(api, {"pending_lifetime_hours": 24}, etag=etag).status_code == 200


def test_a_stale_page_form_and_a_stale_api_etag_are_one_version(admin, acme):
    """A save on the page makes the API's ETag stale, and an API save the page's form."""
    api = api_for(admin, acme)
    read = etag_of(api)
    page = client_for(admin)
    page_version = page.get("/orgs/acme/settings/approval/").context["form"]["version"].value()
    assert change(api, {"pending_lifetime_hours": 30}, etag=read).status_code == 200
    posted = page.post(
        "/orgs/acme/settings/approval/",
        {
            "auto_approved_actions": approval_actions(),
            "scope_mode": "all",
            "pending_lifetime_hours": 40,
            "remote_shell_validity_hours": 4,
            "version": page_version,
        },
    )
    assert posted.status_code == 200 and "Someone changed these settings" in posted.content.decode()
    assert stored(acme).pending_lifetime_hours == 30


# Access


@pytest.mark.parametrize("who", ["operator", "auditor"])
def test_only_admins_change(cast, acme, who):
    api = api_for(cast[who], acme)
    response = change(api, {"pending_lifetime_hours": 24}, etag=etag_of(api))
    assert response.status_code == 403
    assert not ApprovalSettings.objects.filter(organization=acme).exists()


def test_another_organizations_settings_are_404(outsider, acme, globex):
    api = api_for(outsider, globex)
    assert api.get(URL).status_code == 404
    assert change(api, {}, etag='"approval-settings-0"').status_code == 404


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_ten_admins_saving_with_one_etag_at_once_make_one_change(requires_postgresql, acme):
    admins = [UserFactory(username=f"admin-{n}") for n in range(10)]
    for admin in admins:
        MembershipFactory(user=admin, organization=acme, role=Role.ADMIN)
    ApprovalSettings.objects.create(organization=acme)  # a row to lock
    apis = [api_for(admin, acme, name=f"t{n}") for n, admin in enumerate(admins)]
    etag = etag_of(apis[0])
    start = threading.Barrier(len(apis))
    statuses: list[int] = []

    def save(n: int, api) -> None:
        try:
            start.wait()
            statuses.append(change(api, {"pending_lifetime_hours": 10 + n}, etag=etag).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=save, args=(n, a)) for n, a in enumerate(apis)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(statuses) == [200] + [412] * 9
    assert stored(acme).version == 1
    [event] = AuditEvent.objects.filter(verb="settings.changed")
    assert event.data["pending_lifetime_hours"]["after"] == stored(acme).pending_lifetime_hours


def test_fields_the_form_makes_per_action_come_through(admin, acme):
    """The API knows no setting by name: a field of the page's form is one of the API."""
    api = api_for(admin, acme)
    settings = api.get(URL).json()["settings"]
    per_action = {name for name in settings if name.startswith("approvals_needed__")}
    assert per_action == {f"approvals_needed__{key}" for key in approval_actions()}
    assert settings["approvals_needed__isolate_endpoint"] == "1"
    response = change(api, {"approvals_needed__isolate_endpoint": "2"}, etag=etag_of(api))
    assert response.status_code == 200, response.json()
    assert response.json()["settings"]["approvals_needed__isolate_endpoint"] == "2"
    assert stored(acme).approvals_needed_for("isolate_endpoint") == 2
    refused = change(api, {"approvals_needed__isolate_endpoint": "4"}, etag=response["ETag"])
    assert refused.status_code == 400
    assert refused.json()["errors"]["approvals_needed__isolate_endpoint"]
    assert stored(acme).approvals_needed_for("isolate_endpoint") == 2


def test_a_body_past_the_upload_limit_is_413_problem_json(admin, acme, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    api = api_for(admin, acme)
    huge = {"notify_emails": ["a" * 20_000 + "@example.com"]}
    response = change(api, huge, etag=etag_of(api))
    assert response.status_code == 413
    assert response["Content-Type"] == "application/problem+json"
    assert "10,000 bytes" in response.json()["detail"]
    assert not ApprovalSettings.objects.filter(organization=acme).exists()

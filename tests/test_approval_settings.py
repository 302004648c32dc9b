"""The approval settings page: who sees it, who changes it, and what an admin can import."""

import codecs
import re

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from actions.models import Category, ResponseAction
from actions.validators import MAX_UPLOAD_BYTES as MAX_CSV_BYTES
from approvals.models import ApprovalSettings, ScopeMode
from approvals.settings_forms import parse_endpoint_csv
from audit.models import AuditEvent

from .conftest import client_for

pytestmark = pytest.mark.django_db

GUID = "6f9619ff-8b86-d011-b42d-00c04fc964ff"
SAVE_BUTTON = b"Save approval settings"


def url(slug: str = "acme") -> str:
    return reverse("approval_settings", args=[slug])


def approval_actions() -> list[str]:
    return list(
        ResponseAction.objects.filter(
            active=True, category__in=[Category.CRITICAL, Category.RECOMMENDED]
        )
        .order_by("position")
        .values_list("key", flat=True)
    )


def stored(organization) -> ApprovalSettings:
    return ApprovalSettings.for_organization(organization)


def form_data(organization, **changes) -> dict:
    """What the admin's browser posts for the current settings, with `changes` applied."""
    current = stored(organization)
    data = {
        "auto_approved_actions": list(current.auto_approved_actions),
        "scope_mode": current.scope_mode,
        "pending_lifetime_hours": current.pending_lifetime_hours,
        "remote_shell_validity_hours": current.remote_shell_validity_hours,
        "notify_emails": "\n".join(current.notify_emails),
        "version": current.version,
    }
    if current.auto_approval_enabled:
        data["auto_approval_enabled"] = "on"
    data.update(changes)
    return {name: value for name, value in data.items() if value is not None}


def csv_file(content: bytes | str, name: str = "endpoints.csv") -> SimpleUploadedFile:
    if isinstance(content, str):
        content = content.encode()
    return SimpleUploadedFile(name, content, content_type="text/csv")


def errors_of(response, field: str | None = None) -> list[str]:
    form = response.context["form"]
    return form.non_field_errors() if field is None else form.errors.get(field, [])


# Access


def test_admin_gets_an_editable_form(admin):
    response = client_for(admin).get(url())
    assert response.status_code == 200
    assert SAVE_BUTTON in response.content
    assert b'name="csrfmiddlewaretoken"' in response.content
    assert b'name="scope_selected_csv"' in response.content
    assert b"disabled" not in response.content


@pytest.mark.parametrize("who", ["operator", "auditor"])
def test_operator_and_auditor_see_the_settings_read_only(cast, who):
    response = client_for(cast[who]).get(url())
    assert response.status_code == 200
    assert SAVE_BUTTON not in response.content
    assert "Only the organization's admins can change these settings" in response.content.decode()
    form = response.context["form"]
    assert all(field.disabled for field in form.fields.values())
    settings_form = response.content.decode().split('enctype="multipart/form-data"')[1]
    controls = re.findall(r"<(?:input|textarea|select|button)\b[^>]*>", settings_form)
    assert len(controls) > 20
    assert all(" disabled" in control or " readonly" in control for control in controls)


@pytest.mark.parametrize("who", ["operator", "auditor"])
def test_operator_and_auditor_cannot_save(cast, acme, who):
    response = client_for(cast[who]).post(
        url(), form_data(acme, auto_approval_enabled="on", pending_lifetime_hours=1)
    )
    assert response.status_code == 403
    assert not ApprovalSettings.objects.filter(organization=acme).exists()
    assert not AuditEvent.objects.exclude(verb__startswith="auth.").exists()


def test_outsider_gets_404_on_get_and_post(outsider, acme):
    client = client_for(outsider)
    assert client.get(url()).status_code == 404
    assert client.post(url(), form_data(acme, auto_approval_enabled="on")).status_code == 404
    assert not ApprovalSettings.objects.filter(organization=acme).exists()


def test_anonymous_user_is_sent_to_sign_in(client, acme):
    response = client.get(url())
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url()}"
    assert client.post(url(), form_data(acme)).status_code == 302


def test_other_methods_are_not_allowed(admin):
    assert client_for(admin).put(url()).status_code == 405


def test_post_without_csrf_token_is_refused(csrf_client, admin, acme):
    csrf_client.force_login(admin)
    response = csrf_client.post(url(), form_data(acme, auto_approval_enabled="on"))
    assert response.status_code == 403
    assert not ApprovalSettings.objects.filter(organization=acme).exists()


@pytest.mark.parametrize("saved", [False, True], ids=["defaults", "saved with 500 exceptions"])
def test_the_page_costs_a_fixed_number_of_queries(
    admin, acme, saved, django_assert_max_num_queries
):
    if saved:
        ApprovalSettings.objects.create(
            organization=acme,
            auto_approved_actions=approval_actions(),
            scope_exceptions=[f"host-{n}.example.com" for n in range(500)],
        )
    client = client_for(admin)
    with django_assert_max_num_queries(6):
        response = client.get(url())
    assert response.status_code == 200


# What the page shows


def test_a_new_organization_starts_with_auto_approval_off_and_every_action_ticked(admin):
    response = client_for(admin).get(url())
    form = response.context["form"]
    assert form["auto_approval_enabled"].value() is False
    assert form["auto_approved_actions"].value() == approval_actions()
    assert len(approval_actions()) == 16
    for key in approval_actions():
        assert f'name="auto_approved_actions" value="{key}"'.encode() in response.content
    assert response.content.count(b"checked") == len(approval_actions()) + 1  # + scope "all"


def test_actions_are_grouped_with_labels_and_the_auto_approval_note(admin):
    response = client_for(admin).get(url())
    content = response.content.decode()
    critical = content.index('<h3 class="h6" id="actions-critical">Critical actions</h3>')
    recommended = content.index('<h3 class="h6" id="actions-recommended">Recommended actions</h3>')
    assert critical < content.index("Isolate Endpoint") < recommended < content.index("Run osquery")
    assert '<label class="form-check-label" for="id_auto_approved_actions_0">' in content
    assert content.count("Auto-approval must be enabled in order to use this response action") == 3


def test_the_current_endpoint_lists_are_shown(admin, acme):
    ApprovalSettings.objects.create(
        organization=acme,
        scope_selected=["web-01.example.com", "192.0.2.10"],
        scope_exceptions=[f"host-{n}.example.com" for n in range(50)],
    )
    content = client_for(admin).get(url()).content.decode()
    assert "2 endpoints" in content
    assert "web-01.example.com\n192.0.2.10" in content
    assert "50 endpoints" in content
    assert "<summary>Show all 50 endpoints</summary>" in content
    assert "host-49.example.com" in content


# Saving


def test_admin_turns_auto_approval_off_for_isolate_endpoint(admin, acme):
    ticked = [key for key in approval_actions() if key != "isolate_endpoint"]
    client = client_for(admin)
    response = client.post(
        url(), form_data(acme, auto_approval_enabled="on", auto_approved_actions=ticked)
    )
    assert response.status_code == 302
    assert response["Location"] == url()
    settings = stored(acme)
    assert settings.pk is not None
    assert settings.auto_approval_enabled is True
    assert "isolate_endpoint" not in settings.auto_approved_actions
    assert settings.auto_approved_actions == ticked
    assert settings.version == 1
    event = AuditEvent.objects.get(verb="settings.changed")
    assert event.actor == admin
    assert event.organization == acme
    assert event.role == "admin"
    assert event.source == "web"
    assert event.data["auto_approval_enabled"] == {"before": False, "after": True}
    assert event.data["auto_approved_actions"]["after"] == ticked
    assert "isolate_endpoint" in event.data["auto_approved_actions"]["before"]
    page = client.get(url())
    assert b"Approval settings saved." in page.content
    assert page.context["form"]["auto_approved_actions"].value() == ticked


def test_saving_unchanged_settings_says_nothing_changed(admin, acme):
    client = client_for(admin)
    response = client.post(url(), form_data(acme), follow=True)
    assert b"Nothing changed." in response.content
    assert not AuditEvent.objects.exclude(verb__startswith="auth.").exists()


def test_with_auto_approval_off_the_ticks_are_kept(admin, acme):
    client = client_for(admin)
    client.post(url(), form_data(acme, auto_approval_enabled="on"))
    client.post(
        url(),
        form_data(acme, auto_approval_enabled=None, auto_approved_actions=["run_osquery"]),
    )
    settings = stored(acme)
    assert settings.auto_approval_enabled is False
    assert settings.auto_approved_actions == ["run_osquery"]


def test_auto_approval_on_with_nothing_ticked_is_refused(admin, acme):
    response = client_for(admin).post(
        url(), form_data(acme, auto_approval_enabled="on", auto_approved_actions=[])
    )
    assert response.status_code == 200
    assert any(
        "tick at least one action" in error
        for error in errors_of(response, "auto_approved_actions")
    )
    assert b"tick at least one action" in response.content
    assert not ApprovalSettings.objects.filter(organization=acme).exists()
    assert not AuditEvent.objects.exclude(verb__startswith="auth.").exists()


def test_an_unknown_action_key_is_refused(admin, acme):
    response = client_for(admin).post(
        url(), form_data(acme, auto_approved_actions=["isolate_endpoint", "link_workbench_alert"])
    )
    assert "`link_workbench_alert` is not an action of the catalog." in errors_of(
        response, "auto_approved_actions"
    )


def test_a_stale_form_is_refused_with_the_reason(admin, acme):
    client = client_for(admin)
    opened = form_data(acme, pending_lifetime_hours=24)
    client.post(url(), form_data(acme, pending_lifetime_hours=48))
    response = client.post(url(), opened)
    assert response.status_code == 200
    assert any("Someone changed these settings" in error for error in errors_of(response))
    assert b"Someone changed these settings" in response.content
    settings = stored(acme)
    assert settings.pending_lifetime_hours == 48
    assert settings.version == 1
    assert AuditEvent.objects.filter(verb="settings.changed").count() == 1


def test_a_missing_version_is_refused(admin, acme):
    response = client_for(admin).post(url(), form_data(acme, version=None, scope_mode="all"))
    assert response.status_code == 200
    assert b"The form is missing its version" in response.content
    assert not AuditEvent.objects.exclude(verb__startswith="auth.").exists()


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("pending_lifetime_hours", "0", "Expected at least 1 hour"),
        ("pending_lifetime_hours", "721", "Expected at most 720 hours"),
        ("pending_lifetime_hours", "abc", "Enter a whole number of hours from 1 to 720."),
        ("pending_lifetime_hours", "", "Enter a whole number of hours from 1 to 720."),
        ("remote_shell_validity_hours", "0", "Expected at least 1 hour"),
        ("remote_shell_validity_hours", "25", "Expected at most 24 hours"),
        ("remote_shell_validity_hours", "4.5", "Enter a whole number of hours from 1 to 24."),
    ],
)
def test_hours_out_of_range_are_refused(admin, acme, field, value, message):
    response = client_for(admin).post(url(), form_data(acme, **{field: value}))
    assert response.status_code == 200
    assert any(message in error for error in errors_of(response, field))
    assert not ApprovalSettings.objects.filter(organization=acme).exists()


def test_hours_are_saved(admin, acme):
    client_for(admin).post(
        url(), form_data(acme, pending_lifetime_hours=720, remote_shell_validity_hours=1)
    )
    settings = stored(acme)
    assert (settings.pending_lifetime_hours, settings.remote_shell_validity_hours) == (720, 1)


def test_notification_addresses_are_cleaned_and_saved(admin, acme):
    client_for(admin).post(
        url(),
        form_data(
            acme, notify_emails="\r\nSOC@Example.com\r\n  oncall@example.com \r\nsoc@example.com"
        ),
    )
    assert stored(acme).notify_emails == ["soc@example.com", "oncall@example.com"]


def test_a_bad_notification_address_is_named_with_its_line(admin, acme):
    response = client_for(admin).post(
        url(), form_data(acme, notify_emails="soc@example.com\n\nnot-an-address\nroot@localhost")
    )
    errors = errors_of(response, "notify_emails")
    assert "Line 3: `not-an-address` is not an e-mail address" in errors[0]
    assert errors[1].startswith("Line 4: `root@localhost`")
    assert not ApprovalSettings.objects.filter(organization=acme).exists()


def test_more_than_20_notification_addresses_are_refused(admin, acme):
    addresses = "\n".join(f"person-{n}@example.com" for n in range(21))
    response = client_for(admin).post(url(), form_data(acme, notify_emails=addresses))
    assert errors_of(response, "notify_emails") == [
        "You entered 21 addresses: expected at most 20."
    ]


# Endpoint lists


def test_importing_selected_endpoints_from_csv(admin, acme):
    content = (
        codecs.BOM_UTF8
        + b"Hostname\r\nWEB-01.example.com\r\n\r\n192.0.2.10\r\n2001:DB8:0:0:0:0:0:1\r\n"
        + b"web-01.example.com\r\n"
    )
    response = client_for(admin).post(
        url(),
        form_data(acme, scope_mode="selected", scope_selected_csv=csv_file(content)),
    )
    assert response.status_code == 302
    settings = stored(acme)
    assert settings.scope_mode == ScopeMode.SELECTED
    assert settings.scope_selected == ["web-01.example.com", "192.0.2.10", "2001:db8::1"]
    event = AuditEvent.objects.get(verb="scope.imported")
    assert event.data["list"] == "scope_selected"
    assert event.data["added"] == sorted(["web-01.example.com", "192.0.2.10", "2001:db8::1"])
    assert event.data["count"] == {"before": 0, "after": 3}
    assert AuditEvent.objects.get(verb="settings.changed").data["scope_mode"] == {
        "before": "all",
        "after": "selected",
    }


def test_an_imported_file_replaces_the_list(admin, acme):
    ApprovalSettings.objects.create(organization=acme, scope_exceptions=["old.example.com"])
    client_for(admin).post(
        url(), form_data(acme, scope_exceptions_csv=csv_file("new.example.com\n"))
    )
    assert stored(acme).scope_exceptions == ["new.example.com"]
    event = AuditEvent.objects.get(verb="scope.imported")
    assert event.data["added"] == ["new.example.com"]
    assert event.data["removed"] == ["old.example.com"]


def test_a_csv_with_bad_rows_is_refused_whole(admin, acme):
    content = (
        "hostname\n"
        "good.example.com\n"
        "bad host.example.com\n"
        "=cmd|' /C calc'!A0\n"
        f"{GUID}\n"
        "a.example.com,b.example.com,c.example.com\n"
        "192.0.2.1\n"
    )
    response = client_for(admin).post(
        url(), form_data(acme, scope_mode="selected", scope_selected_csv=csv_file(content))
    )
    assert response.status_code == 200
    errors = errors_of(response, "scope_selected_csv")
    assert errors[0].startswith("Nothing was imported: 3 rows are not valid.")
    assert errors[1] == (
        "Line 3: `bad host.example.com` is not an endpoint: expected a hostname, an IP "
        "address or an agent GUID."
    )
    assert errors[2].startswith("Line 4: `=cmd|' /C calc'!A0` is not an endpoint")
    # Line 5, the agent GUID, is a good row: scope lists name machines by GUID too.
    assert errors[3].startswith("Line 6: 3 values in one row")
    assert not ApprovalSettings.objects.filter(organization=acme).exists()
    assert not AuditEvent.objects.exclude(verb__startswith="auth.").exists()


def test_a_bad_file_changes_nothing_else_either(admin, acme):
    response = client_for(admin).post(
        url(),
        form_data(
            acme,
            auto_approval_enabled="on",
            scope_exceptions_csv=csv_file("not a host\n"),
        ),
    )
    assert response.status_code == 200
    assert stored(acme).auto_approval_enabled is False


@pytest.mark.parametrize(
    "content",
    ["web-01.example.com\n".encode("utf-16"), "höst.example.com\n".encode("latin-1")],
    ids=["utf-16", "latin-1"],
)
def test_a_file_that_is_not_utf8_is_refused(admin, acme, content):
    response = client_for(admin).post(
        url(), form_data(acme, scope_exceptions_csv=csv_file(content))
    )
    [error] = errors_of(response, "scope_exceptions_csv")
    assert error.startswith("The file ")
    assert error.endswith("expected a spreadsheet saved as “CSV UTF-8”.")
    assert "not UTF-8 text" in error or "NUL bytes" in error
    assert not ApprovalSettings.objects.filter(organization=acme).exists()


def test_a_file_of_1_mb_is_refused(admin, acme):
    content = b"a.example.com\n" * (MAX_CSV_BYTES // 14 + 1)
    response = client_for(admin).post(
        url(), form_data(acme, scope_exceptions_csv=csv_file(content))
    )
    [error] = errors_of(response, "scope_exceptions_csv")
    assert "expected a file under 1 MB" in error
    assert not ApprovalSettings.objects.filter(organization=acme).exists()


def test_more_than_10000_endpoints_are_refused(admin, acme):
    content = "".join(f"h{n}\n" for n in range(10_001))
    response = client_for(admin).post(
        url(), form_data(acme, scope_exceptions_csv=csv_file(content))
    )
    assert errors_of(response, "scope_exceptions_csv") == [
        "The file lists 10,001 endpoints: expected at most 10,000."
    ]
    assert not ApprovalSettings.objects.filter(organization=acme).exists()


def test_an_empty_file_is_refused(admin, acme):
    response = client_for(admin).post(
        url(), form_data(acme, scope_exceptions_csv=csv_file("hostname\n\n"))
    )
    assert errors_of(response, "scope_exceptions_csv") == [
        "The file has no endpoints: expected one hostname, IP address or agent GUID per row."
    ]


def test_selected_mode_without_endpoints_is_refused(admin, acme):
    response = client_for(admin).post(url(), form_data(acme, scope_mode="selected"))
    assert response.status_code == 200
    assert any(
        "Selected endpoints only needs at least one endpoint" in error
        for error in errors_of(response, "scope_mode")
    )
    assert not ApprovalSettings.objects.filter(organization=acme).exists()


def test_clearing_the_selected_list_in_selected_mode_is_refused(admin, acme):
    ApprovalSettings.objects.create(
        organization=acme, scope_mode=ScopeMode.SELECTED, scope_selected=["a.example.com"]
    )
    response = client_for(admin).post(url(), form_data(acme, clear_scope_selected="on"))
    assert any("at least one endpoint" in error for error in errors_of(response, "scope_mode"))
    assert stored(acme).scope_selected == ["a.example.com"]


def test_remove_all_empties_a_list(admin, acme):
    ApprovalSettings.objects.create(
        organization=acme, scope_exceptions=["a.example.com", "192.0.2.1"]
    )
    response = client_for(admin).post(url(), form_data(acme, clear_scope_exceptions="on"))
    assert response.status_code == 302
    assert stored(acme).scope_exceptions == []
    event = AuditEvent.objects.get(verb="scope.imported")
    assert event.data["removed"] == ["192.0.2.1", "a.example.com"]
    assert event.data["count"] == {"before": 2, "after": 0}


def test_a_file_and_remove_all_together_are_refused(admin, acme):
    response = client_for(admin).post(
        url(),
        form_data(
            acme, clear_scope_exceptions="on", scope_exceptions_csv=csv_file("a.example.com\n")
        ),
    )
    assert any("not both" in error for error in errors_of(response, "clear_scope_exceptions"))
    assert not ApprovalSettings.objects.filter(organization=acme).exists()


# parse_endpoint_csv, without HTTP


def messages_of(data: bytes) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        parse_endpoint_csv(data)
    return caught.value.messages


@pytest.mark.parametrize("header", ["hostname", "ENDPOINT", "Ip", "host"])
def test_csv_header_row_is_skipped(header):
    assert parse_endpoint_csv(f"{header}\nweb-01\n".encode()) == ["web-01"]


def test_csv_header_is_only_the_first_row():
    assert messages_of(b"web-01\nhostname,x\n")[1].startswith("Line 2: 2 values in one row")
    assert parse_endpoint_csv(b"web-01\nhost\n") == ["web-01", "host"]


def test_csv_values_are_canonical_and_unique():
    data = (
        codecs.BOM_UTF8 + b"WEB-01.Example.COM.\n 192.0.2.10 \n2001:db8::0:1\nweb-01.example.com\n"
    )
    assert parse_endpoint_csv(data) == ["web-01.example.com", "192.0.2.10", "2001:db8::1"]


def test_csv_trailing_empty_cells_and_quotes_are_accepted():
    assert parse_endpoint_csv(b'"web-01",,\r\n"192.0.2.1"\r\n') == ["web-01", "192.0.2.1"]


def test_csv_value_only_in_the_second_column_is_a_bad_row():
    assert messages_of(b",web-01\n")[1] == (
        "Line 1: the first column is empty: expected the hostname, IP address or agent GUID there."
    )


@pytest.mark.parametrize("value", [GUID, GUID.upper(), "{" + GUID.upper() + "}", f" {GUID} "])
def test_csv_guids_are_accepted_in_canonical_form(value):
    assert parse_endpoint_csv(f"guid\n{value}\nweb-01\n".encode()) == [GUID, "web-01"]


def test_csv_urn_guid_is_a_bad_row():
    assert messages_of(f"urn:uuid:{GUID}\n".encode())[1].startswith(
        f"Line 1: `urn:uuid:{GUID}` is not an endpoint"
    )


@pytest.mark.parametrize(
    "value",
    ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "host_name", "fe80::1%eth0", "300.1.1.1"],
)
def test_csv_formulas_and_malformed_values_are_bad_rows(value):
    messages = messages_of(f"ok.example.com\n{value}\n".encode())
    assert messages[1].startswith("Line 2: `")
    expected = "is not an endpoint: expected a hostname, an IP address or an agent GUID"
    assert expected in messages[1]


def test_csv_lists_at_most_10_bad_rows():
    messages = messages_of(b"bad host\n" * 15)
    assert messages[0].startswith("Nothing was imported: 15 rows are not valid.")
    assert messages[10].startswith("Line 10:")
    assert messages[11] == "… and 5 more bad rows."
    assert len(messages) == 12


def test_csv_line_numbers_count_physical_lines():
    messages = messages_of(b'a.example.com\n"two\nlines"\nbad host\n')
    assert messages[1].startswith("Line 2: `two\\nlines`")
    assert messages[2].startswith("Line 4: `bad host`")


def test_csv_of_1_mb_is_refused_and_just_under_is_read():
    assert "expected a file under 1 MB" in messages_of(b"a" * MAX_CSV_BYTES)[0]
    row = b"a.example.com\n"
    assert parse_endpoint_csv(row * ((MAX_CSV_BYTES - 1) // len(row))) == ["a.example.com"]


def test_csv_with_nul_bytes_is_not_text():
    assert messages_of(b"w\x00e\x00b\x00\n\x00") == [
        "The file holds NUL bytes, so it is binary or UTF-16: "
        "expected a spreadsheet saved as “CSV UTF-8”."
    ]


def test_csv_of_exactly_10000_endpoints_is_accepted():
    assert len(parse_endpoint_csv("".join(f"h{n}\n" for n in range(10_000)).encode())) == 10_000


def test_empty_csv_is_refused():
    assert messages_of(b"") == [
        "The file has no endpoints: expected one hostname, IP address or agent GUID per row."
    ]

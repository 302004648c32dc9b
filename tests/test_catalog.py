import dataclasses

import pytest
from django.core.management import call_command
from django.urls import reverse

from actions import catalog
from actions.models import ResponseAction
from actions.sync import sync_catalog

from .conftest import client_for

pytestmark = pytest.mark.django_db

# DESIGN §2, as the product promises it: key → (category, needs auto-approval).
EXPECTED = {
    "link_workbench_alert": ("not_required", False),
    "add_suspicious_object_exception": ("not_required", False),
    "add_detection_model_exception": ("not_required", False),
    "dump_process_memory": ("not_required", False),
    "add_to_block_list": ("critical", False),
    "collect_evidence": ("critical", True),
    "collect_file": ("critical", False),
    "disable_user_account": ("critical", False),
    "isolate_endpoint": ("critical", False),
    "quarantine_email": ("critical", False),
    "restore_connection": ("critical", False),
    "scan_for_malware": ("critical", False),
    "terminate_process": ("critical", False),
    "collect_network_analysis_package": ("recommended", False),
    "deploy_tippingpoint_filter": ("recommended", False),
    "run_osquery": ("recommended", True),
    "run_custom_script": ("recommended", False),
    "run_yara_rules": ("recommended", True),
    "start_remote_shell": ("recommended", False),
    "submit_sandbox": ("recommended", False),
}
NOTE = "Auto-approval must be enabled in order to use this response action"


def test_the_migration_fills_the_catalog_as_designed():
    rows = {
        row.key: (row.category, row.needs_auto_approval) for row in ResponseAction.objects.all()
    }
    assert rows == EXPECTED


def test_each_action_has_one_sentence_and_the_form_parameters():
    for action in ResponseAction.objects.all():
        assert action.description.endswith("."), action.key
        assert ". " not in action.description, action.key
        assert action.parameters, action.key
        assert all({"name", "label", "help", "required"} <= set(p) for p in action.parameters)


def test_sync_is_idempotent():
    before = list(ResponseAction.objects.values())
    result = sync_catalog()
    assert not result.changed
    assert list(ResponseAction.objects.values()) == before


def test_a_changed_description_in_code_updates_the_row(monkeypatch):
    original = catalog.BY_KEY["isolate_endpoint"]
    changed = dataclasses.replace(original, description="Cuts the endpoint off, more plainly.")
    monkeypatch.setattr(
        catalog, "ACTIONS", tuple(changed if a is original else a for a in catalog.ACTIONS)
    )
    monkeypatch.setattr("actions.sync.ACTIONS", catalog.ACTIONS)
    result = sync_catalog()
    assert result.updated == ["isolate_endpoint"]
    assert result.created == result.deactivated == []
    row = ResponseAction.objects.get(key="isolate_endpoint")
    assert row.description == "Cuts the endpoint off, more plainly."


def test_an_action_removed_from_code_is_deactivated_not_deleted(monkeypatch):
    remaining = tuple(a for a in catalog.ACTIONS if a.key != "submit_sandbox")
    monkeypatch.setattr("actions.sync.ACTIONS", remaining)
    result = sync_catalog()
    assert result.deactivated == ["submit_sandbox"]
    assert ResponseAction.objects.get(key="submit_sandbox").active is False


def test_a_missing_row_is_created_again():
    ResponseAction.objects.filter(key="run_osquery").delete()
    assert sync_catalog().created == ["run_osquery"]
    assert ResponseAction.objects.get(key="run_osquery").needs_auto_approval


def test_sync_command_reports_what_it_did(capsys):
    call_command("sync_catalog")
    assert "nothing changed" in capsys.readouterr().out
    ResponseAction.objects.filter(key="scan_for_malware").update(name="Old name")
    call_command("sync_catalog")
    assert "Updated 1: scan_for_malware" in capsys.readouterr().out


def test_catalog_page_lists_three_groups_in_order(operator):
    response = client_for(operator).get(reverse("catalog"))
    groups = response.context["groups"]
    assert [(g["category"].label, len(g["actions"])) for g in groups] == [
        ("Approval not required", 4),
        ("Critical", 9),
        ("Recommended", 7),
    ]
    html = response.content.decode()
    positions = [
        html.index(f'id="group-{key}"') for key in ("not_required", "critical", "recommended")
    ]
    assert positions == sorted(positions)
    assert html.count(NOTE) == 3
    assert (
        "Cuts the endpoint off the network, keeping only the link to its managing server." in html
    )


def test_catalog_hides_deactivated_actions(operator):
    ResponseAction.objects.filter(key="submit_sandbox").update(active=False)
    response = client_for(operator).get(reverse("catalog"))
    assert "Submit for Sandbox Analysis" not in response.content.decode()
    detail = client_for(operator).get(reverse("action_detail", args=["submit_sandbox"]))
    assert detail.status_code == 404


def test_action_page_shows_the_parameters_its_form_asks_for(operator):
    response = client_for(operator).get(reverse("action_detail", args=["terminate_process"]))
    html = response.content.decode()
    assert "Terminate Process" in html
    for name in ("endpoints", "sha1", "file_name"):
        assert f"<code>{name}</code>" in html
    assert "Optional" in html
    assert NOTE not in html


def test_action_page_carries_the_auto_approval_note(operator):
    response = client_for(operator).get(reverse("action_detail", args=["run_yara_rules"]))
    assert NOTE in response.content.decode()


def test_unknown_action_is_a_404(operator):
    response = client_for(operator).get("/actions/no_such_action/")
    assert response.status_code == 404

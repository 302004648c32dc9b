"""The main journeys, through the real pages with real clicks and typing."""

import csv
import re

from django.contrib.auth.models import User
from playwright.sync_api import expect

from approvals import services
from approvals.models import ActionRequest, ApprovalSettings, RequestStatus
from audit.models import AuditEvent
from responseportal.models import Organization

from ..approvals_helpers import submit
from .conftest import go, sign_in

AUTO_APPROVAL_SENTENCE = "Auto-approval must be enabled in order to use this response action."


def test_operator_is_refused_osquery_while_auto_approval_is_off(portal):
    sign_in(portal, "operator")
    go(portal, "/orgs/acme/requests/new/run_osquery/")
    portal.get_by_label("Endpoints").fill("web-01.acme.test")
    portal.get_by_label("Query").fill("SELECT pid, name FROM processes;")
    portal.get_by_role("button", name="Submit request").click()
    expect(portal.get_by_text(AUTO_APPROVAL_SENTENCE).first).to_be_visible()
    assert not ActionRequest.objects.exists()


def test_a_bad_sha1_is_named_and_the_other_input_kept(portal):
    sign_in(portal, "operator")
    go(portal, "/orgs/acme/requests/new/terminate_process/")
    portal.get_by_label("Endpoint").fill("web-07.acme.test")
    portal.get_by_label("SHA-1").fill("not-a-hash")
    portal.get_by_label("File name").fill("evil.exe")
    portal.get_by_role("button", name="Submit request").click()
    expect(
        portal.get_by_text("is not a SHA-1 hash: expected 40 hexadecimal characters.")
    ).to_be_visible()
    expect(portal.get_by_label("Endpoint")).to_have_value("web-07.acme.test")
    expect(portal.get_by_label("File name")).to_have_value("evil.exe")
    assert not ActionRequest.objects.exists()


def test_operator_submits_and_admin_approves_from_the_queue(portal, browser_of):
    sign_in(portal, "operator")
    go(portal, "/orgs/acme/requests/new/isolate_endpoint/")
    portal.get_by_label("Endpoints").fill("web-01.acme.test\nweb-02.acme.test")
    portal.get_by_label("Description").fill("Beaconing to a known C2 address")
    portal.get_by_role("button", name="Submit request").click()
    expect(portal.get_by_text("Pending approval").first).to_be_visible()
    request = ActionRequest.objects.get()
    assert request.status == RequestStatus.PENDING

    admin = browser_of("acme-admin")
    go(admin, "/orgs/acme/queue/")
    admin.get_by_label(re.compile("Select Isolate Endpoint")).check()
    admin.get_by_role("button", name="Approve selected").click()
    expect(admin.get_by_text("Approved 1 request.")).to_be_visible()
    request.refresh_from_db()
    assert request.status != RequestStatus.PENDING
    assert request.decided_by.username == "acme-admin"


def test_admin_rejects_three_requests_with_one_reason(portal):
    acme = Organization.objects.get(slug="acme")
    operator = User.objects.get(username="operator")
    for n in range(3):
        submit(acme, operator, endpoints=[f"host-{n}.acme.test"])
    sign_in(portal, "acme-admin")
    go(portal, "/orgs/acme/queue/")
    for box in portal.get_by_role("checkbox").all():
        box.check()
    portal.get_by_label("Reason (required to reject)").fill("Wrong hosts: these are lab machines")
    portal.get_by_role("button", name="Reject selected").click()
    expect(portal.get_by_text("Rejected 3 requests.")).to_be_visible()
    assert set(ActionRequest.objects.values_list("status", "decision_reason")) == {
        (RequestStatus.REJECTED, "Wrong hosts: these are lab machines")
    }


def test_markup_in_a_description_shows_as_text(portal):
    hostile = '<script>alert("x")</script> "><img src=x onerror=alert(1)>'
    sign_in(portal, "operator")
    go(portal, "/orgs/acme/requests/new/isolate_endpoint/")
    portal.get_by_label("Endpoints").fill("web-01.acme.test")
    portal.get_by_label("Description").fill(hostile)
    portal.get_by_role("button", name="Submit request").click()
    expect(portal.get_by_text(hostile).first).to_be_visible()
    portal.reload()
    assert portal.dialogs == []
    assert portal.locator("img[src=x]").count() == 0


def test_wrong_role_gets_the_403_page_and_an_outsider_the_404_page(portal, browser_of):
    sign_in(portal, "operator")
    response = portal.goto(portal.base_url + "/orgs/acme/queue/")
    assert response.status == 403
    expect(portal.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(portal.get_by_role("link", name="Response Portal")).to_be_visible()

    outsider = browser_of("globex-admin")
    response = outsider.goto(portal.base_url + "/orgs/acme/")
    assert response.status == 404
    expect(outsider.get_by_role("heading", name="Not found")).to_be_visible()


def test_admin_turns_off_automatic_approval_for_isolate_endpoint(portal):
    sign_in(portal, "acme-admin")
    portal.get_by_role("link", name="Approval settings").click()
    # The action names label the break-glass boxes and the two-person counts too.
    automatic = portal.get_by_role("region", name="Automatic approval")
    automatic.get_by_label("Enable automatic approval").check()
    automatic.get_by_label("Isolate Endpoint", exact=True).uncheck()
    portal.get_by_role("button", name="Save approval settings").click()

    expect(portal.get_by_text("Approval settings saved.")).to_be_visible()
    automatic = portal.get_by_role("region", name="Automatic approval")
    expect(automatic.get_by_label("Enable automatic approval")).to_be_checked()
    expect(automatic.get_by_label("Isolate Endpoint", exact=True)).not_to_be_checked()
    expect(automatic.get_by_label("Scan for Malware", exact=True)).to_be_checked()
    saved = ApprovalSettings.for_organization(Organization.objects.get(slug="acme"))
    assert saved.auto_approval_enabled
    assert "isolate_endpoint" not in saved.auto_approved_actions

    portal.get_by_role("link", name="Audit log").click()
    portal.get_by_label("Verb", exact=True).select_option("settings.changed")
    portal.get_by_role("button", name="Filter", exact=True).click()
    portal.get_by_role("link", name=re.compile(r"^Event \d+: details$")).click()
    expect(portal.get_by_role("heading", level=1)).to_have_text(
        "acme-admin changed the approval settings: automatic approval, "
        "the actions approved automatically"
    )
    expect(portal.locator("main")).to_contain_text("settings.changed")
    enabled = portal.get_by_role("row", name=re.compile("auto_approval_enabled"))
    expect(enabled.get_by_role("cell")).to_have_text(["false", "true"])
    actions = portal.get_by_role("row", name=re.compile("auto_approved_actions"))
    expect(actions).to_contain_text("Removed: isolate_endpoint")
    expect(actions).not_to_contain_text("Added:")


def test_the_open_request_page_follows_the_request_to_successful(portal, browser_of):
    sign_in(portal, "operator")
    go(portal, "/orgs/acme/requests/new/isolate_endpoint/")
    portal.get_by_label("Endpoints").fill("web-01.acme.test\nweb-02.acme.test")
    portal.get_by_label("Description").fill("Beaconing to a known C2 address")
    portal.get_by_role("button", name="Submit request").click()
    status = portal.locator("#request-status")
    expect(status).to_have_text(re.compile("Pending approval"))
    reloads = []
    portal.on("framenavigated", lambda frame: reloads.append(frame.url))

    admin = browser_of("acme-admin")
    go(admin, "/orgs/acme/queue/")
    admin.get_by_label(re.compile("Select Isolate Endpoint")).check()
    admin.get_by_role("button", name="Approve selected").click()
    expect(admin.get_by_text("Approved 1 request.")).to_be_visible()

    # Nobody touches the operator's page: its own script notices the decision (it asks every
    # 5 s while the request waits) and follows the run to its outcome.
    expect(status).to_have_text(re.compile("Successful"), timeout=15_000)
    targets = portal.get_by_role("row", name=re.compile(r"web-0[12]\.acme\.test"))
    expect(targets).to_have_count(2)
    for row in targets.all():
        expect(row).to_contain_text("Successful")
    assert ActionRequest.objects.get().status == RequestStatus.SUCCESSFUL
    assert reloads, "the page was expected to reload itself once the request was decided"


def test_auditor_filters_pages_back_and_exports_the_filtered_events(portal):
    acme = Organization.objects.get(slug="acme")
    operator = User.objects.get(username="operator")
    admin = User.objects.get(username="acme-admin")
    requests = [submit(acme, operator, endpoints=[f"host-{n:02}.acme.test"]) for n in range(60)]
    for request in requests[:5]:
        services.reject_request(request.pk, actor=admin, reason="Lab machine")
    submitted = AuditEvent.objects.filter(verb="request.submitted", organization=acme)
    expected = sorted(submitted.values_list("pk", flat=True))
    assert len(expected) == 60

    sign_in(portal, "acme-auditor")
    go(portal, "/orgs/acme/")
    portal.get_by_role("link", name="Audit log").click()
    portal.get_by_label("Verb", exact=True).select_option("request.submitted")
    portal.get_by_role("button", name="Filter", exact=True).click()
    rows = portal.locator("main table tbody tr")
    expect(rows).to_have_count(50)
    expect(rows.filter(has_not_text="request.submitted")).to_have_count(0)

    portal.get_by_role("link", name="Older →").click()
    expect(rows).to_have_count(10)
    expect(rows.filter(has_not_text="request.submitted")).to_have_count(0)
    expect(portal.get_by_role("link", name="← Newer")).to_be_visible()
    expect(portal.get_by_label("Verb", exact=True)).to_have_value("request.submitted")

    with portal.expect_download() as download:
        portal.get_by_role("link", name="Export these events as CSV").click()
    assert re.fullmatch(r"audit-acme-\d{8}T\d{6}Z\.csv", download.value.suggested_filename)
    with open(download.value.path(), newline="", encoding="utf-8") as exported:
        lines = list(csv.DictReader(exported))
    assert [int(line["id"]) for line in lines] == expected
    assert {line["verb"] for line in lines} == {"request.submitted"}
    assert {line["organization"] for line in lines} == {"acme"}

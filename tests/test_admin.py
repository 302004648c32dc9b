"""The Django admin: platform admins assign roles; recorded rows stay read-only."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from approvals import services
from approvals.models import ApprovalSettings
from responseportal.models import Membership, Role

from .approvals_helpers import submit
from .conftest import client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def platform_admin(db):
    return get_user_model().objects.create_superuser("platform", "platform@example.com", "x" * 16)


@pytest.mark.parametrize(
    "model",
    [
        "responseportal_organization",
        "responseportal_membership",
        "auth_user",
        "actions_responseaction",
        "approvals_actionrequest",
        "audit_auditevent",
        "approvals_approvalsettings",
        "approvals_script",
    ],
)
def test_platform_admin_sees_every_list(platform_admin, acme, operator, model):
    submit(acme, operator)
    response = client_for(platform_admin).get(reverse(f"admin:{model}_changelist"))
    assert response.status_code == 200


def test_platform_admin_assigns_a_role(platform_admin, acme):
    from .factories import UserFactory

    newcomer = UserFactory(username="newcomer")
    response = client_for(platform_admin).post(
        reverse("admin:responseportal_membership_add"),
        {"user": newcomer.pk, "organization": acme.pk, "role": Role.AUDITOR},
    )
    assert response.status_code == 302
    assert Membership.objects.get(user=newcomer).role == Role.AUDITOR


@pytest.mark.parametrize(
    "model", ["audit_auditevent", "approvals_actionrequest", "actions_responseaction"]
)
def test_recorded_rows_cannot_be_added_or_changed_in_the_admin(
    platform_admin, acme, operator, model
):
    request = submit(acme, operator)
    client = client_for(platform_admin)
    assert client.get(reverse(f"admin:{model}_add")).status_code == 403
    pk = {"approvals_actionrequest": request.pk}.get(model)
    if pk:
        page = client.get(reverse(f"admin:{model}_change", args=[pk]))
        assert page.status_code == 200
        assert b'name="_save"' not in page.content
        assert (
            client.post(reverse(f"admin:{model}_delete", args=[pk]), {"post": "yes"}).status_code
            == 403
        )


def test_portal_members_are_not_let_into_the_admin(admin):
    response = client_for(admin).get(reverse("admin:index"))
    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]


def test_a_request_page_in_the_admin_lists_who_approved_it(platform_admin, acme, operator, admin):
    settings = ApprovalSettings.for_organization(acme)
    settings.approvals_needed = {"isolate_endpoint": 2}
    settings.save()
    action_request = submit(acme, operator)
    services.approve_request(action_request.id, actor=admin, comment="Seen the beacon")

    page = client_for(platform_admin).get(
        reverse("admin:approvals_actionrequest_change", args=[action_request.id])
    )
    assert page.status_code == 200
    approvals = page.context["inline_admin_formsets"][1]
    assert [form.original.admin.username for form in approvals] == ["acme-admin"]
    assert "Seen the beacon" in page.content.decode()

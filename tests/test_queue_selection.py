"""The pending queue offers a checkbox only for requests its viewer may decide."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from approvals.models import ActionRequest
from responseportal.models import Membership, Role

from .approvals_helpers import submit
from .conftest import client_for
from .factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def selectable(html: str) -> set[str]:
    """The request UUIDs the page lets its viewer tick."""
    boxes = re.findall(r"<input[^>]*>", html)
    return {
        re.search(r'value="([^"]+)"', box).group(1)
        for box in boxes
        if 'type="checkbox"' in box and 'name="requests"' in box
    }


@pytest.fixture
def other_operator(acme):
    user = UserFactory(username="other-operator")
    MembershipFactory(user=user, organization=acme, role=Role.OPERATOR)
    return user


def test_an_admin_gets_no_checkbox_for_their_own_request(acme, operator, other_operator):
    own = submit(acme, operator, endpoints=["own.acme.test"])
    theirs = submit(acme, other_operator, endpoints=["theirs.acme.test"])
    # The operator who submitted `own` has since become an admin of the organization.
    Membership.objects.filter(user=operator, organization=acme).update(role=Role.ADMIN)

    html = client_for(operator).get(reverse("queue", args=["acme"])).content.decode()

    assert str(own.uuid) in html  # listed, so the admin sees it waits for someone else
    assert selectable(html) == {str(theirs.uuid)}


def test_an_admin_gets_a_checkbox_for_each_pending_request_of_others(acme, operator, admin):
    requests = [submit(acme, operator, endpoints=[f"h{n}.acme.test"]) for n in range(3)]

    html = client_for(admin).get(reverse("queue", args=["acme"])).content.decode()

    assert selectable(html) == {str(r.uuid) for r in requests}


def test_an_overdue_request_gets_no_checkbox(acme, operator, admin):
    overdue = submit(acme, operator, endpoints=["late.acme.test"])
    fresh = submit(acme, operator, endpoints=["fresh.acme.test"])
    ActionRequest.objects.filter(pk=overdue.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )

    html = client_for(admin).get(reverse("queue", args=["acme"])).content.decode()

    assert selectable(html) == {str(fresh.uuid)}

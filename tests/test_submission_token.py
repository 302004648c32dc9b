"""A submission token makes a double click harmless; it never hands one user another's request."""

import uuid

import pytest
from django.db import IntegrityError
from django.test import Client
from django.urls import reverse

from approvals.models import ActionRequest
from approvals.transitions import SubmissionRefused
from responseportal.models import Role

from .approvals_helpers import submit, turn_on_auto_approval
from .factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def second_operator(acme):
    user = UserFactory(username="second-operator")
    MembershipFactory(user=user, organization=acme, role=Role.OPERATOR)
    return user


def test_a_second_operator_cannot_reuse_anothers_submission_token(acme, operator, second_operator):
    token = uuid.uuid4()
    first = submit(acme, operator, endpoints=["web-01.acme.test"], submission_token=token)

    try:
        second = submit(acme, second_operator, endpoints=["db-01"], submission_token=token)
    except IntegrityError:
        second = None

    assert second is None or second.pk != first.pk
    first.refresh_from_db()
    assert first.requester == operator
    assert [t.value for t in first.targets.all()] == ["web-01.acme.test"]


def test_the_form_never_sends_a_second_operator_to_anothers_request(
    acme, operator, second_operator
):
    token = uuid.uuid4()
    first = submit(acme, operator, endpoints=["web-01.acme.test"], submission_token=token)
    client = Client(raise_request_exception=False)
    client.force_login(second_operator)

    response = client.post(
        reverse("new_request", args=["acme", "isolate_endpoint"]),
        {
            "submission_token": str(token),
            "endpoints": "db-01.acme.test",
            "description": "Beaconing",
        },
    )

    first_page = reverse("request_detail", args=["acme", first.uuid])
    assert response.get("Location") != first_page
    assert str(first.uuid) not in response.content.decode()
    assert not ActionRequest.objects.filter(requester=second_operator, pk=first.pk).exists()
    first.refresh_from_db()
    assert (first.requester, first.events.count()) == (operator, 1)


def test_the_same_operator_submitting_twice_is_sent_to_the_first_request(acme, operator):
    client = Client()
    client.force_login(operator)
    data = {
        "submission_token": str(uuid.uuid4()),
        "endpoints": "web-01.acme.test",
        "description": "Beaconing",
    }
    target = reverse("new_request", args=["acme", "isolate_endpoint"])

    first = client.post(target, data)
    again = client.post(target, data)

    created = ActionRequest.objects.get()
    assert (
        first["Location"]
        == again["Location"]
        == (reverse("request_detail", args=["acme", created.uuid]))
    )


def test_a_repeat_the_rules_now_refuse_still_leads_to_the_first_request(acme, operator):
    """Automatic approval turned off between two clicks: osquery is refused from then on, but
    the second click of the form already submitted lands on its request."""
    osquery = {
        "key": "run_osquery",
        "parameters": {"endpoints": ["web-01.acme.test"], "query": "SELECT pid FROM processes;"},
    }
    settings = turn_on_auto_approval(acme)
    token = uuid.uuid4()
    first = submit(acme, operator, submission_token=token, **osquery)
    settings.auto_approval_enabled = False
    settings.save()

    again = submit(acme, operator, submission_token=token, **osquery)

    assert again.pk == first.pk
    with pytest.raises(SubmissionRefused):
        submit(acme, operator, submission_token=uuid.uuid4(), **osquery)
    assert ActionRequest.objects.count() == 1

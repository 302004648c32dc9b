from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from approvals import services
from approvals.dashboard import duration_text, figures
from approvals.models import ActionRequest
from responseportal.models import Role

from .approvals_helpers import submit, turn_on_auto_approval
from .conftest import client_for
from .factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def shift(request, **times):
    ActionRequest.objects.filter(pk=request.pk).update(**times)


def test_pending_counts_only_requests_that_can_still_be_decided(acme, operator):
    old = submit(acme, operator, endpoints=["old"])
    submit(acme, operator, endpoints=["new"])
    overdue = submit(acme, operator, endpoints=["overdue"])
    now = timezone.now()
    shift(old, submitted_at=now - timedelta(hours=5))
    shift(overdue, submitted_at=now - timedelta(hours=9), expires_at=now - timedelta(hours=1))
    shown = figures(acme)
    assert shown.pending == 2
    assert shown.oldest_pending == now - timedelta(hours=5)


def test_median_time_to_decision_and_auto_share(acme, operator, admin):
    now = timezone.now()
    for minutes in (10, 30, 50):
        request = submit(acme, operator, endpoints=[f"h{minutes}"])
        services.approve_request(request.pk, actor=admin)
        shift(request, submitted_at=now - timedelta(minutes=minutes), decided_at=now)
    turn_on_auto_approval(acme)
    submit(acme, operator, endpoints=["auto"])
    shown = figures(acme)
    assert shown.median_decision == timedelta(minutes=30)
    assert shown.median_decision_text == "30 min"
    assert (shown.decided, shown.needing_approval, shown.auto_share_percent) == (3, 4, 25)


def test_the_chart_counts_each_day_by_outcome(acme, operator, admin):
    rejected = submit(acme, operator, endpoints=["a"])
    services.reject_request(rejected.pk, actor=admin, reason="no")
    shift(rejected, submitted_at=timezone.now() - timedelta(days=2))
    submit(acme, operator, endpoints=["b"])
    too_old = submit(acme, operator, endpoints=["c"])
    shift(too_old, submitted_at=timezone.now() - timedelta(days=31))
    shown = figures(acme)
    assert shown.total == 2
    assert shown.days[-1].counts == {"pending": 1}
    assert shown.days[-3].counts == {"rejected": 1}
    assert {item["key"]: item["count"] for item in shown.legend()}["rejected"] == 1
    assert len(shown.chart()["bars"]) == 2


def test_latest_events_belong_to_the_organization(acme, globex, operator):
    other = UserFactory(username="globex-operator")
    MembershipFactory(user=other, organization=globex, role=Role.OPERATOR)
    submit(globex, other, endpoints=["x"])
    for n in range(12):
        submit(acme, operator, endpoints=[f"h{n}"])
    events = figures(acme).latest_events
    assert len(events) == 10
    assert {event.organization_id for event in events} == {acme.pk}
    assert events[0].request.targets.get().value == "h11"


def test_the_page_draws_the_chart_and_the_figures(acme, operator, admin):
    submit(acme, operator, endpoints=["web-01"])
    html = client_for(admin).get(reverse("org_dashboard", args=["acme"])).content.decode()
    assert "<svg" in html and "<rect" in html
    assert "Pending approval" in html and "Open the queue" in html
    assert "request.submitted" in html


def test_an_empty_organization_says_so(admin):
    html = client_for(admin).get(reverse("org_dashboard", args=["acme"])).content.decode()
    assert "No requests in the last 30 days." in html
    assert "Nothing waits" in html


def test_the_page_costs_the_same_with_1_and_50_requests(acme, operator, admin):
    client = client_for(admin)
    submit(acme, operator, endpoints=["h0"])
    with CaptureQueriesContext(connection) as one:
        client.get(reverse("org_dashboard", args=["acme"]))
    for n in range(1, 50):
        submit(acme, operator, endpoints=[f"h{n}"])
    with CaptureQueriesContext(connection) as fifty:
        client.get(reverse("org_dashboard", args=["acme"]))
    assert len(fifty) == len(one) <= 10


@pytest.mark.parametrize(
    "seconds,text",
    [
        (0, "0 s"),
        (35, "35 s"),
        (3600 + 12 * 60, "1 h 12 min"),
        (2 * 86400 + 3 * 3600 + 5, "2 d 3 h"),
    ],
)
def test_durations_read_like_people_say_them(seconds, text):
    assert duration_text(timedelta(seconds=seconds)) == text

"""The dashboard's time to decision: median and 90th percentile from submission to an admin's
decision over the last 30 days, per action, and how many requests expired undecided."""

from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from approvals import services
from approvals.dashboard import close_to_expiry, figures, percentile
from approvals.models import ActionRequest, RequestStatus

from .approvals_helpers import submit, turn_on_auto_approval
from .conftest import client_for

pytestmark = pytest.mark.django_db

ISOLATE, SCAN = "isolate_endpoint", "scan_for_malware"


def decided(organization, operator, admin, *, key, minutes, days_ago=1, reject=False):
    """A request of `key` decided `days_ago` days ago, `minutes` after its submission."""
    action_request = submit(organization, operator, key=key, endpoints=[f"h-{key}-{minutes}"])
    if reject:
        services.reject_request(action_request.pk, actor=admin, reason="Not this host")
    else:
        services.approve_request(action_request.pk, actor=admin)
    decided_at = timezone.now() - timedelta(days=days_ago)
    ActionRequest.objects.filter(pk=action_request.pk).update(
        submitted_at=decided_at - timedelta(minutes=minutes), decided_at=decided_at
    )
    return action_request


def expired(organization, operator, *, key, days_ago, marked=True):
    """A request of `key` that expired undecided `days_ago` days ago (marked expired by the
    periodic job, or still pending past its expiry time)."""
    action_request = submit(organization, operator, key=key, endpoints=[f"x-{key}-{days_ago}"])
    expires_at = timezone.now() - timedelta(days=days_ago)
    ActionRequest.objects.filter(pk=action_request.pk).update(
        submitted_at=expires_at - timedelta(hours=72), expires_at=expires_at
    )
    if marked:
        services.expire_request(action_request.pk)
    return action_request


@pytest.fixture
def history(acme, globex, operator, admin, outsider):
    # Isolate Endpoint: 1, 2, 3, 4 and 10 minutes (one of them a rejection).
    for minutes in (1, 2, 4, 10):
        decided(acme, operator, admin, key=ISOLATE, minutes=minutes)
    decided(acme, operator, admin, key=ISOLATE, minutes=3, reject=True)
    # Scan for Malware: 10 and 20 minutes.
    decided(acme, operator, admin, key=SCAN, minutes=20, days_ago=29)
    decided(acme, operator, admin, key=SCAN, minutes=10)
    # Not counted: decided more than 30 days ago, cancelled, still pending.
    decided(acme, operator, admin, key=ISOLATE, minutes=500, days_ago=31)
    services.cancel_request(submit(acme, operator, endpoints=["cancelled"]).pk, actor=operator)
    submit(acme, operator, endpoints=["waiting"])
    # Expired undecided: two of Isolate Endpoint (one not yet marked), one of Scan for Malware;
    # one more 40 days ago, not counted.
    expired(acme, operator, key=ISOLATE, days_ago=2)
    expired(acme, operator, key=ISOLATE, days_ago=0.5, marked=False)
    expired(acme, operator, key=SCAN, days_ago=10)
    expired(acme, operator, key=SCAN, days_ago=40)


def rows_by_action(shown):
    return {row.action: row for row in shown.decision_times_by_action}


def test_the_percentiles_interpolate_between_the_closest_ranks():
    minutes = [timedelta(minutes=m) for m in (1, 2, 3, 4, 10)]
    # Ranks 0..4: the median is rank 2; the 90th percentile is rank 3.6, 60% of the way
    # from 4 to 10 minutes.
    assert percentile(minutes, 0.5) == timedelta(minutes=3)
    assert percentile(minutes, 0.9) == timedelta(minutes=7, seconds=36)
    assert percentile([timedelta(seconds=42)], 0.9) == timedelta(seconds=42)
    assert percentile(minutes[:4], 0.5) == timedelta(minutes=2, seconds=30)


def test_median_and_90th_percentile_per_action_and_expired_undecided(history, acme):
    shown = figures(acme)
    rows = rows_by_action(shown)
    assert set(rows) == {"Isolate Endpoint", "Scan for Malware"}
    isolate, scan = rows["Isolate Endpoint"], rows["Scan for Malware"]
    assert (isolate.decided, isolate.median, isolate.p90, isolate.expired) == (
        5,
        timedelta(minutes=3),
        timedelta(minutes=7, seconds=36),
        2,
    )
    assert (scan.decided, scan.median, scan.p90, scan.expired) == (
        2,
        timedelta(minutes=15),
        timedelta(minutes=19),
        1,
    )
    # All seven decisions: 1, 2, 3, 4, 10, 10, 20 minutes; rank 5.4 for the 90th percentile.
    everything = shown.decision_times
    assert (everything.decided, everything.median, everything.p90) == (
        7,
        timedelta(minutes=4),
        timedelta(minutes=14),
    )
    assert shown.expired_undecided == 3
    assert (shown.decided, shown.median_decision) == (7, timedelta(minutes=4))


def test_automatic_approvals_and_other_organizations_do_not_count(
    acme, globex, operator, admin, outsider
):
    from responseportal.models import Role

    from .factories import MembershipFactory

    MembershipFactory(user=operator, organization=globex, role=Role.OPERATOR)
    decided(globex, operator, outsider, key=ISOLATE, minutes=90)
    expired(globex, operator, key=ISOLATE, days_ago=1)
    turn_on_auto_approval(acme)
    submit(acme, operator, endpoints=["auto"])
    shown = figures(acme)
    assert shown.decision_times_by_action == []
    assert (shown.decided, shown.expired_undecided, shown.median_decision) == (0, 0, None)


def test_the_dashboard_shows_the_figures_per_action(history, acme, admin):
    html = client_for(admin).get(reverse("org_dashboard", args=["acme"])).content.decode()
    table = html.split('id="decision-times-heading"')[1].split("</table>")[0]
    rows = [row for row in table.split("<tr>")[2:]]
    assert rows[0].startswith('<th scope="row">Isolate Endpoint</th>')
    assert "<td>5</td><td>3 min</td><td>7 min 36 s</td><td>2</td>" in rows[0]
    assert rows[1].startswith('<th scope="row">Scan for Malware</th>')
    assert "<td>2</td><td>15 min</td><td>19 min</td><td>1</td>" in rows[1]
    assert "All actions</th><td>7</td><td>4 min</td><td>14 min</td><td>3</td>" in rows[2]
    assert "90th percentile: 14 min" in html and "3 expired undecided" in html


def test_without_decisions_the_dashboard_says_so(acme, admin):
    html = client_for(admin).get(reverse("org_dashboard", args=["acme"])).content.decode()
    assert "No request waited for a decision in the last 30 days." in html
    assert "0 expired undecided" in html


def test_the_page_costs_the_same_with_1_and_50_decisions(
    acme, operator, admin, django_assert_max_num_queries
):
    client = client_for(admin)
    decided(acme, operator, admin, key=ISOLATE, minutes=5)
    expired(acme, operator, key=SCAN, days_ago=1)
    with django_assert_max_num_queries(10):
        client.get(reverse("org_dashboard", args=["acme"]))
    for n in range(49):
        decided(acme, operator, admin, key=[ISOLATE, SCAN][n % 2], minutes=n + 6)
        expired(acme, operator, key=ISOLATE, days_ago=1 + n / 10)
    with django_assert_max_num_queries(10):
        response = client.get(reverse("org_dashboard", args=["acme"]))
    assert "50 expired undecided" in response.content.decode()


def test_the_close_to_expiry_query_follows_the_models_rule(acme, operator):
    now = timezone.now()
    # (lifetime in hours, hours since submission): a quarter left is the boundary.
    cases = [(72, 53), (72, 54), (72, 60), (72, 71.9), (72, 73), (4, 2.9), (4, 3), (1, 0.8)]
    for n, (lifetime, waited) in enumerate(cases):
        action_request = submit(acme, operator, endpoints=[f"c-{n}"])
        submitted_at = now - timedelta(hours=waited)
        ActionRequest.objects.filter(pk=action_request.pk).update(
            submitted_at=submitted_at, expires_at=submitted_at + timedelta(hours=lifetime)
        )
    requests = ActionRequest.objects.filter(organization=acme)
    expected = {r.pk for r in requests if r.is_close_to_expiry(now)}
    assert len(expected) == 5  # (72, 54), (72, 60), (72, 71.9), (4, 3), (1, 0.8)
    assert set(close_to_expiry(requests, now).values_list("pk", flat=True)) == expected


@pytest.mark.postgresql
def test_the_figures_equal_postgresqls_percentile_cont(requires_postgresql, history, acme):
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT a.name,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY r.decided_at - r.submitted_at),
                   percentile_cont(0.9) WITHIN GROUP (ORDER BY r.decided_at - r.submitted_at)
            FROM approvals_actionrequest r JOIN actions_responseaction a ON a.id = r.action_id
            WHERE r.organization_id = %s AND r.approval_mode = 'manual'
              AND r.status NOT IN (%s, %s, %s)
              AND r.decided_at >= now() - interval '30 days'
            GROUP BY a.name ORDER BY a.name
            """,
            [acme.pk, RequestStatus.EXPIRED, RequestStatus.CANCELLED, RequestStatus.PENDING],
        )
        expected = {name: (median, p90) for name, median, p90 in cursor.fetchall()}
    rows = rows_by_action(figures(acme))
    assert {name: (row.median, row.p90) for name, row in rows.items()} == expected

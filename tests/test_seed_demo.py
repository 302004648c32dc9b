from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.utils import timezone

from approvals.models import ActionRequest, Notification, RequestStatus, Script
from audit.chain import chain_of, record, verify_chain
from audit.models import AuditEvent, Source
from responseportal.models import Membership, Organization

pytestmark = pytest.mark.django_db

EXPECTED = {
    ("operator", "acme", "operator"),
    ("operator", "globex", "operator"),
    ("acme-admin", "acme", "admin"),
    ("acme-auditor", "acme", "auditor"),
    ("globex-admin", "globex", "admin"),
    ("operator", "initech", "operator"),
    ("initech-admin", "initech", "admin"),
}


def memberships():
    return set(Membership.objects.values_list("user__username", "organization__slug", "role"))


def test_it_refuses_without_debug_or_force(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG=true"):
        call_command("seed_demo")
    assert not Membership.objects.exists()


def test_it_creates_the_demo_cast(settings):
    settings.DEBUG = True
    call_command("seed_demo")
    assert memberships() == EXPECTED
    assert get_user_model().objects.get(username="acme-admin").check_password("demo-password")


def test_running_it_twice_changes_nothing_and_loses_nothing():
    call_command("seed_demo", force=True)
    admin = get_user_model().objects.get(username="acme-admin")
    admin.set_password("a-password-the-admin-chose")
    admin.save()
    call_command("seed_demo", force=True)
    assert memberships() == EXPECTED
    admin.refresh_from_db()
    assert admin.check_password("a-password-the-admin-chose")


def test_demo_operator_can_sign_in(client):
    call_command("seed_demo", force=True)
    response = client.post(
        "/accounts/login/", {"username": "operator", "password": "demo-password"}
    )
    assert response.status_code == 302


# The demo's month of history: seed_demo writes it after its own commit, so these tests run
# outside the test's transaction, on PostgreSQL (its table of audit events can be emptied).


def counts() -> dict[str, int]:
    return {
        "events": AuditEvent.objects.count(),
        "requests": ActionRequest.objects.count(),
        "notifications": Notification.objects.count(),
        "scripts": Script.objects.count(),
    }


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_the_demo_gets_a_month_of_history_once(requires_postgresql):
    before = timezone.now()
    out = StringIO()
    call_command("seed_demo", force=True, stdout=out)
    after = timezone.now()
    assert "Wrote 30 days of history at acme" in out.getvalue()

    acme, globex = Organization.objects.get(slug="acme"), Organization.objects.get(slug="globex")
    for organization in (acme, globex):
        report = verify_chain(chain_of(organization))
        assert report.first_break is None and report.checked > 200
        requests = ActionRequest.objects.filter(organization=organization)
        statuses = set(requests.values_list("status", flat=True))
        assert {
            RequestStatus.PENDING,
            RequestStatus.SUCCESSFUL,
            RequestStatus.REJECTED,
            RequestStatus.EXPIRED,
        } <= statuses, organization.slug
        # A month back, nothing in the future, and each event in time order along its chain.
        times = list(
            AuditEvent.objects.filter(chain=chain_of(organization))
            .order_by("sequence")
            .values_list("timestamp", flat=True)
        )
        assert times == sorted(times)
        assert before - timedelta(days=30, minutes=5) <= times[0] < before - timedelta(days=25)
        assert times[-1] <= after
        # Everyone in the cast did something, through the pages' own paths.
        verbs = set(
            AuditEvent.objects.filter(organization=organization).values_list("verb", flat=True)
        )
        assert {
            "auth.signed_in",
            "settings.changed",
            "request.submitted",
            "request.approved",
            "request.rejected",
            "request.expired",
            "execution.succeeded",
        } <= verbs, organization.slug
        waiting = requests.filter(status=RequestStatus.PENDING)
        assert all(r.expires_at > after for r in waiting)

    acme_requests = ActionRequest.objects.filter(organization=acme)
    assert acme_requests.filter(status=RequestStatus.PARTIALLY_SUCCESSFUL).exists()
    assert ActionRequest.objects.filter(status=RequestStatus.CANCELLED).exists()
    # Most of the catalog, submitted by the operator and decided by the admins.
    assert acme_requests.values("action").distinct().count() >= 17
    assert set(acme_requests.values_list("requester__username", flat=True)) == {"operator"}
    decided = acme_requests.filter(decided_by__isnull=False).exclude(status=RequestStatus.CANCELLED)
    assert set(decided.values_list("decided_by__username", flat=True)) == {"acme-admin"}
    delays = [r.decided_at - r.submitted_at for r in decided]
    assert min(delays) >= timedelta(minutes=2) and max(delays) < timedelta(days=4)
    assert all(r.decision_reason for r in acme_requests.filter(status=RequestStatus.REJECTED))
    approved_by_mail = AuditEvent.objects.filter(verb="request.approved", source=Source.EMAIL)
    assert approved_by_mail.exists()
    # What was sent back then is not sent again: the outbox holds nothing from before the last
    # digest interval (the digests of the last minutes go out with the next run of beat).
    assert not Notification.objects.filter(
        sent_at__isnull=True, created_at__lt=before - timedelta(minutes=10)
    ).exists()

    first = counts()
    call_command("seed_demo", force=True, stdout=StringIO())
    call_command("seed_demo_history", force=True, stdout=StringIO())
    assert counts() == first


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_an_organization_with_a_past_keeps_it(requires_postgresql):
    call_command("seed_demo", force=True, history=False, verbosity=0)
    globex = Organization.objects.get(slug="globex")
    record(globex, "settings.changed", data={"pending_lifetime_hours": {"before": 72, "after": 24}})

    out = StringIO()
    call_command("seed_demo_history", force=True, stdout=out)

    assert "globex: already has a history" in out.getvalue()
    assert AuditEvent.objects.filter(organization=globex).count() == 1
    assert not ActionRequest.objects.filter(organization=globex).exists()
    assert ActionRequest.objects.filter(organization__slug="acme").count() > 30
    # The operator's sign-ins went to the organization whose month was written, not to globex.
    assert AuditEvent.objects.filter(organization__slug="acme", verb="auth.signed_in").exists()


def test_the_history_is_never_written_inside_a_transaction():
    call_command("seed_demo", force=True, history=False)
    with pytest.raises(CommandError, match="outside a transaction"):
        call_command("seed_demo_history", force=True)
    assert not ActionRequest.objects.exists()
    assert not AuditEvent.objects.exists()


def test_the_history_refuses_without_debug_or_force(settings):
    settings.DEBUG = False
    call_command("seed_demo", force=True, history=False)
    with pytest.raises(CommandError, match="DEBUG=true"):
        call_command("seed_demo_history")
    assert not ActionRequest.objects.exists()

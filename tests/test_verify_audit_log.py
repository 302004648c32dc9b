"""`verify_audit_log` finds the first event that was changed, removed or replaced."""

import importlib
from contextlib import contextmanager
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from audit.chain import record
from audit.models import AuditEvent

from .conftest import client_for
from .test_audit_jam import forge_with_a_fresh_hash

pytestmark = pytest.mark.django_db

TRIGGERS = importlib.import_module("approvals.migrations.0003_audit_append_only")


@contextmanager
def triggers_off():
    """What someone with direct database access could do; the test's rollback undoes it."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Django's foreign keys are deferred: their pending checks would block ALTER TABLE.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute("ALTER TABLE approvals_auditevent DISABLE TRIGGER USER")
        else:
            for statement in TRIGGERS.SQLITE_REMOVE:
                cursor.execute(statement)
        yield cursor
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE approvals_auditevent ENABLE TRIGGER USER")
        else:
            for statement in TRIGGERS.SQLITE_INSTALL:
                cursor.execute(statement)


def verify(*args) -> str:
    out = StringIO()
    call_command("verify_audit_log", *args, stdout=out)
    return out.getvalue()


def refused(*args) -> CommandError:
    with pytest.raises(CommandError) as caught:
        verify(*args)
    assert caught.value.returncode == 1
    return caught.value


@pytest.fixture
def events(acme, globex, admin):
    """Five acme events, two globex events and one platform event."""
    made = [record(acme, "settings.changed", actor=admin, data={"n": n}) for n in range(5)]
    record(globex, "settings.changed")
    record(globex, "settings.changed")
    record(None, "auth.sign_in_failed", actor_username="mallory")
    return made


def test_an_intact_log_passes_and_says_how_many_events_were_checked(events):
    assert "Checked 8 events in 3 chains" in verify()
    assert "intact" in verify()


def test_one_organization_can_be_checked_alone(events):
    assert "Checked 2 events in 1 chain " in verify("--org", "globex")


def test_an_unknown_organization_is_an_error(events):
    with pytest.raises(CommandError, match="No organization has the slug `initech`"):
        verify("--org", "initech")


def test_an_empty_log_is_intact(db):
    assert "Checked 0 events" in verify()


def test_a_changed_field_is_named_as_altered_content(events, acme):
    with triggers_off() as cursor:
        cursor.execute(
            "UPDATE approvals_auditevent SET actor_username = 'someone-else' WHERE id = %s",
            [events[2].pk],
        )
    error = refused()
    assert f"Chain org:{acme.pk}, sequence 3 (event {events[2].pk}): altered content" in str(error)
    assert events[2].hash in str(error)


def test_changed_data_is_altered_content(events):
    with triggers_off() as cursor:
        cursor.execute(
            "UPDATE approvals_auditevent SET data = %s WHERE id = %s", ['{"n": 99}', events[0].pk]
        )
    assert f"sequence 1 (event {events[0].pk}): altered content" in str(refused("--org", "acme"))
    assert "intact" in verify("--org", "globex")


def test_a_deleted_event_is_named_as_missing(events):
    with triggers_off() as cursor:
        cursor.execute("DELETE FROM approvals_auditevent WHERE id = %s", [events[1].pk])
    error = str(refused())
    assert f"sequence 3 (event {events[2].pk}): missing event" in error
    assert "no event at sequence 2" in error


def test_deleted_latest_events_are_missing_too(events):
    with triggers_off() as cursor:
        cursor.execute(
            "DELETE FROM approvals_auditevent WHERE id IN (%s, %s)", [events[3].pk, events[4].pk]
        )
    error = str(refused("--org", "acme"))
    assert "sequence 4 (no event): missing event" in error
    assert "sequences 4 to 5 are gone" in error


def test_an_event_rewritten_with_a_fresh_hash_breaks_the_next_link(events):
    forge_with_a_fresh_hash(events[1].pk)
    error = str(refused())
    assert f"sequence 3 (event {events[2].pk}): broken link" in error
    assert f"the hash of event {events[1].pk} before it" in error


def test_the_first_bad_event_is_named_when_there_are_several(events):
    with triggers_off() as cursor:
        cursor.execute(
            "UPDATE approvals_auditevent SET verb = 'request.approved' WHERE id IN (%s, %s)",
            [events[3].pk, events[1].pk],
        )
    assert f"sequence 2 (event {events[1].pk})" in str(refused())


def test_the_web_page_of_a_changed_event_says_so(events, auditor):
    with triggers_off() as cursor:
        cursor.execute(
            "UPDATE approvals_auditevent SET role = 'operator' WHERE id = %s", [events[2].pk]
        )
    response = client_for(auditor).get(f"/orgs/acme/audit/{events[2].pk}/")
    assert "does not match its hash" in response.content.decode()


def test_seeded_events_verify(acme):
    out = StringIO()
    call_command("seed_audit_events", "1200", "--org", "acme", "--batch-size", "500", stdout=out)
    assert "Created 1,200 audit events" in out.getvalue()
    record(acme, "settings.changed")
    call_command("seed_audit_events", "300", "--orgs", "3", stdout=out)
    assert AuditEvent.objects.filter(organization=acme).count() == 1201 + 100
    assert "Checked 1,501 events in 3 chains" in verify()


def test_seeding_a_new_organization_creates_it(db):
    call_command("seed_audit_events", "10", "--org", "initech", stdout=StringIO())
    assert "Checked 10 events in 1 chain " in verify("--org", "initech")


@pytest.mark.parametrize("jobs", ["0", "-3", "17", "100000", "two", "1e3", "4\x00"])
def test_a_jobs_count_out_of_range_or_not_a_number_is_refused_before_anything_runs(jobs):
    with pytest.raises(CommandError, match=r"argument --jobs: .*expected 1 to 16"):
        call_command("verify_audit_log", "--jobs", jobs, stdout=StringIO())

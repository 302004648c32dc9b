"""A row planted in an audit chain cannot jam it: the database refuses a row that does not
continue its chain and takes in one that does; verification checks the head and every event
beyond it; and an append that still meets a stray row refuses the change in words, alerts, and
leaves sign-in and every other organization working."""

import importlib
import logging
from contextlib import contextmanager
from io import StringIO
from unittest import mock

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from django.urls import reverse
from django.utils import timezone

from approvals.models import RequestStatus
from audit import chain as audit_chain
from audit.chain import AuditLogJammed, chain_of, record, verify_chain
from audit.models import AuditChainHead, AuditEvent
from responseportal.models import Role
from responseportal.refusals import TransitionRefused

from .approvals_helpers import submit
from .conftest import client_for
from .factories import PASSWORD, MembershipFactory

pytestmark = pytest.mark.django_db

APPEND_ONLY = importlib.import_module("approvals.migrations.0003_audit_append_only")
CONTINUES = importlib.import_module("audit.migrations.0003_events_continue_their_chain")
GARBAGE = "f" * 64
COLUMNS = (
    "chain, sequence, timestamp, organization_id, actor_username, role, verb, action_key, "
    "data, source, user_agent, prev_hash, hash"
)


@contextmanager
def triggers_off():
    """What the owner of the tables could do: every audit trigger off for a moment."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute("ALTER TABLE approvals_auditevent DISABLE TRIGGER USER")
        else:
            for statement in APPEND_ONLY.SQLITE_REMOVE + CONTINUES.SQLITE_REMOVE:
                cursor.execute(statement)
        yield cursor
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE approvals_auditevent ENABLE TRIGGER USER")
        else:
            for statement in APPEND_ONLY.SQLITE_INSTALL + CONTINUES.SQLITE_INSTALL:
                cursor.execute(statement)


def forge_with_a_fresh_hash(event_pk: int) -> None:
    """Rewrite an event's data and give it the hash of its new content, behind the portal's
    back: only the link from the event after it can tell."""
    forged = AuditEvent.objects.get(pk=event_pk)
    forged.data = {"n": "forged"}
    forged.hash = audit_chain.event_hash(forged)
    with triggers_off() as cursor:
        cursor.execute(
            "UPDATE approvals_auditevent SET data = %s, hash = %s WHERE id = %s",
            ['{"n": "forged"}', forged.hash, forged.pk],
        )


def plant(cursor, organization, sequence: int, prev_hash: str, hash_: str = GARBAGE) -> int:
    """INSERT one event by hand, as someone with a database connection would; its id."""
    cursor.execute(
        f"INSERT INTO approvals_auditevent ({COLUMNS}) "  # noqa: S608 - constant columns
        "VALUES (%s, %s, %s, %s, 'mallory', '', 'settings.changed', '', '{}', 'web', '', %s, %s)",
        [chain_of(organization), sequence, timezone.now(), organization.pk, prev_hash, hash_],
    )
    return AuditEvent.objects.get(chain=chain_of(organization), sequence=sequence).pk


def head_of(organization) -> AuditChainHead:
    return AuditChainHead.objects.get(chain=chain_of(organization))


def verify(*args) -> str:
    out = StringIO()
    call_command("verify_audit_log", *args, stdout=out)
    return out.getvalue()


def refused(*args) -> str:
    with pytest.raises(CommandError) as caught:
        verify(*args)
    assert caught.value.returncode == 1
    return str(caught.value)


@pytest.fixture
def three(acme, admin):
    return [record(acme, "settings.changed", actor=admin, data={"n": n}) for n in range(3)]


class TestTheDatabase:
    """The trigger of audit migration 0003, on SQLite and PostgreSQL alike."""

    @pytest.mark.parametrize(
        "sequence, prev",
        [(4, "garbage"), (5, "last"), (3, "last"), (1, "genesis"), (4, "second")],
        ids=["garbage-link", "gap", "taken-sequence", "restart", "stale-link"],
    )
    def test_a_row_that_does_not_continue_the_chain_is_refused(self, acme, three, sequence, prev):
        prev_hash = {
            "garbage": GARBAGE,
            "last": three[-1].hash,
            "genesis": "0" * 64,
            "second": three[1].hash,
        }[prev]
        with (
            pytest.raises(IntegrityError),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            plant(cursor, acme, sequence, prev_hash)
        assert AuditEvent.objects.filter(chain=chain_of(acme)).count() == 3
        assert head_of(acme).last_sequence == 3

    def test_the_refusal_says_what_is_expected(self, acme, three):
        with (
            pytest.raises(IntegrityError, match="must continue its chain"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            plant(cursor, acme, 4, GARBAGE)

    def test_a_chain_without_a_head_takes_no_row(self, acme):
        with (
            pytest.raises(IntegrityError, match="must continue its chain"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            plant(cursor, acme, 1, "0" * 64)

    def test_a_planted_row_that_links_becomes_the_next_event_and_jams_nothing(
        self, acme, admin, three
    ):
        """The issue's row: the next sequence and a garbage hash."""
        with connection.cursor() as cursor:
            planted = plant(cursor, acme, 4, three[-1].hash)
        head = head_of(acme)
        assert (head.last_sequence, head.last_hash) == (4, GARBAGE)
        after = record(acme, "settings.changed", actor=admin)
        assert (after.sequence, after.prev_hash) == (5, GARBAGE)
        error = refused("--org", "acme")
        assert f"sequence 4 (event {planted}): altered content" in error

    def test_a_bulk_append_moves_the_head_once_per_row_in_order(self, acme, admin):
        events = [
            audit_chain.AuditEvent(organization=acme, actor=admin, verb="settings.changed")
            for _ in range(250)
        ]
        for event in events:
            event.actor_username, event.data = admin.username, {}
        audit_chain.append(acme, events[:100])
        audit_chain.append(acme, events[100:])
        head = head_of(acme)
        last = AuditEvent.objects.get(chain=chain_of(acme), sequence=250)
        assert (head.last_sequence, head.last_hash, head.last_timestamp) == (
            250,
            last.hash,
            last.timestamp,
        )
        assert verify_chain(chain_of(acme)).first_break is None


class TestVerification:
    def test_a_row_beyond_the_head_is_named(self, acme, three):
        with triggers_off() as cursor:
            planted = plant(cursor, acme, 4, GARBAGE)
        error = refused()
        assert f"Chain org:{acme.pk}, sequence 4 (event {planted}): event beyond the head" in error
        assert "head is at sequence 3" in error

    def test_a_perfectly_linked_and_hashed_row_beyond_the_head_is_named(self, acme, three):
        forged = AuditEvent(
            organization=acme,
            chain=chain_of(acme),
            sequence=4,
            timestamp=timezone.now(),
            actor_username="mallory",
            verb="settings.changed",
            data={},
            prev_hash=three[-1].hash,
        )
        forged.hash = audit_chain.event_hash(forged)
        with triggers_off() as cursor:
            planted = plant(cursor, acme, 4, forged.prev_hash, forged.hash)
        assert AuditEvent.objects.get(pk=planted).hash == forged.hash
        assert f"sequence 4 (event {planted}): event beyond the head" in refused("--org", "acme")

    def test_a_row_far_beyond_the_head_is_named(self, acme, three):
        with triggers_off() as cursor:
            planted = plant(cursor, acme, 1000, GARBAGE)
        assert f"sequence 1000 (event {planted}): event beyond the head" in refused()

    def test_a_head_whose_time_was_changed_is_named(self, acme, three):
        AuditChainHead.objects.filter(chain=chain_of(acme)).update(
            last_timestamp=three[-1].timestamp.replace(year=2099)
        )
        assert f"sequence 3 (event {three[-1].pk}): altered head" in refused()

    def test_a_deleted_head_is_named(self, acme, three):
        AuditChainHead.objects.filter(chain=chain_of(acme)).delete()
        assert f"sequence 1 (event {three[0].pk}): no head" in refused()

    def test_events_appended_while_the_walk_runs_are_not_taken_for_planted_ones(
        self, acme, admin, three
    ):
        walked_to_head = audit_chain._Walk.head_is_broken
        appended = []

        def append_meanwhile(walk, head):
            if not appended:  # another worker appends just as the walk reaches the head
                appended.append(record(acme, "settings.changed", actor=admin))
            return walked_to_head(walk, head)

        with mock.patch.object(audit_chain._Walk, "head_is_broken", append_meanwhile):
            report = verify_chain(chain_of(acme))
        assert (report.checked, report.first_break) == (4, None)

    def test_an_intact_log_is_still_intact(self, acme, globex, three):
        record(globex, "settings.changed")
        assert "Checked 4 events in 2 chains" in verify()


@pytest.fixture
def jammed(acme, three, caplog):
    """acme's chain with a row planted beyond its head, behind every trigger's back."""
    with triggers_off() as cursor:
        planted = plant(cursor, acme, 4, GARBAGE)
    caplog.set_level(logging.CRITICAL, logger="audit.chain")
    return planted


class TestAJammedChain:
    def test_an_append_is_refused_in_words_with_a_critical_alert(self, acme, jammed, caplog):
        with pytest.raises(AuditLogJammed) as caught:
            record(acme, "settings.changed")
        message = caught.value.message
        assert f"event {jammed} at sequence 4" in message
        assert "Nothing was changed" in message and "verify_audit_log" in message
        assert isinstance(caught.value, TransitionRefused)
        [alert] = [r for r in caplog.records if r.levelno == logging.CRITICAL]
        assert f"Audit chain org:{acme.pk} is jammed: event {jammed}" in alert.getMessage()
        assert AuditEvent.objects.filter(chain=chain_of(acme)).count() == 4
        assert head_of(acme).last_sequence == 3

    def test_an_approval_is_refused_with_the_message_and_the_request_waits(
        self, acme, operator, admin, three
    ):
        action_request = submit(acme, operator)
        assert action_request.status == RequestStatus.PENDING
        with triggers_off() as cursor:
            planted = plant(cursor, acme, head_of(acme).last_sequence + 1, GARBAGE)
        response = client_for(admin).post(
            reverse("request_approve", args=["acme", action_request.uuid]),
            {"comment": "ok"},
            follow=True,
        )
        assert response.status_code == 200
        assert f"event {planted} at sequence" in response.content.decode()
        action_request.refresh_from_db()
        assert action_request.status == RequestStatus.PENDING

    def test_a_page_that_does_not_expect_it_answers_403_with_the_message(
        self, acme, auditor, jammed
    ):
        response = client_for(auditor).get(reverse("audit_export", args=["acme"]))
        assert response.status_code == 403
        assert f"event {jammed} at sequence 4" in response.content.decode()

    def test_sign_in_still_works_and_is_recorded_in_the_users_other_organization(
        self, client, acme, globex, admin, jammed
    ):
        MembershipFactory(user=admin, organization=globex, role=Role.AUDITOR)
        response = client.post(reverse("login"), {"username": "acme-admin", "password": PASSWORD})
        assert response.status_code == 302
        signed_in = AuditEvent.objects.filter(verb="auth.signed_in")
        assert [event.chain for event in signed_in] == [chain_of(globex)]
        assert client.get(reverse("org_dashboard", args=["globex"])).status_code == 200
        client.post(reverse("logout"))
        assert AuditEvent.objects.filter(verb="auth.signed_out", chain=chain_of(globex)).exists()

    def test_a_failed_sign_in_is_still_answered(self, client, acme, admin, jammed):
        response = client.post(reverse("login"), {"username": "acme-admin", "password": "nope"})
        assert response.status_code == 200
        assert not AuditEvent.objects.filter(verb="auth.sign_in_failed").exists()

    def test_other_organizations_go_on(self, globex, jammed):
        assert record(globex, "settings.changed").sequence == 1

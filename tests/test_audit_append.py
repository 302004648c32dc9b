"""What an append costs and what it leaves behind: two statements inside the caller's
transaction (lock the head, insert), no savepoint, events that read back as written, and a
refusal that leaves the caller's transaction usable."""

import logging

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from audit import chain as audit_chain
from audit.chain import AuditLogJammed, append, chain_of, record, verify_chain
from audit.models import AuditChainHead, AuditEvent
from responseportal.models import Organization

from .test_audit_jam import GARBAGE, plant, triggers_off

pytestmark = pytest.mark.django_db


def statements_of(function) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        function()
    return [query["sql"] for query in captured.captured_queries]


def unsaved(organization, count: int, admin) -> list[AuditEvent]:
    return [
        AuditEvent(
            organization=organization,
            actor=admin,
            actor_username=admin.username,
            verb="settings.changed",
            data={"n": n},
        )
        for n in range(count)
    ]


def test_an_append_inside_a_transaction_locks_the_head_and_inserts_nothing_else(acme):
    record(acme, "settings.changed")
    with transaction.atomic():
        sql = statements_of(lambda: record(acme, "settings.changed", data={"n": 1}))
    assert len(sql) == 2
    assert sql[0].startswith("SELECT") and "approvals_auditchainhead" in sql[0]
    assert sql[1].startswith("INSERT INTO approvals_auditevent")
    if connection.vendor == "postgresql":
        assert "FOR UPDATE" in sql[0]


def test_the_stored_head_follows_each_append(acme, admin):
    first = record(acme, "settings.changed", actor=admin)
    head = AuditChainHead.objects.get(chain=chain_of(acme))
    assert (head.last_sequence, head.last_hash, head.last_timestamp) == (
        1,
        first.hash,
        first.timestamp,
    )
    second = record(acme, "settings.changed", actor=admin)
    head.refresh_from_db()
    assert (head.last_sequence, head.last_hash) == (2, second.hash)


def test_appended_events_have_the_ids_they_are_stored_under(acme, globex, admin):
    appended = append(acme, unsaved(acme, 130, admin))  # more than one insert on SQLite
    stored = dict(AuditEvent.objects.filter(chain=chain_of(acme)).values_list("sequence", "id"))
    assert [(event.sequence, event.pk) for event in appended] == sorted(stored.items())
    assert all(not event._state.adding for event in appended)
    assert verify_chain(chain_of(acme)).first_break is None
    assert append(globex, []) == []
    assert not AuditEvent.objects.filter(chain=chain_of(globex)).exists()


def test_on_sqlite_before_3_35_events_are_inserted_one_at_a_time(acme, admin, monkeypatch):
    if connection.vendor != "sqlite":
        # The row-at-a-time path is SQLite's alone: PostgreSQL returns the inserted rows' ids.
        assert connection.features.can_return_rows_from_bulk_insert
        return
    monkeypatch.setattr(type(connection.features), "can_return_rows_from_bulk_insert", False)
    appended = append(acme, unsaved(acme, 3, admin))
    stored = list(
        AuditEvent.objects.filter(chain=chain_of(acme))
        .order_by("sequence")
        .values_list("id", "hash")
    )
    assert [(event.pk, event.hash) for event in appended] == stored
    assert verify_chain(chain_of(acme)).first_break is None


def test_two_new_chains_get_their_heads_in_one_transaction(db):
    first = Organization.objects.create(slug="first", name="First")
    second = Organization.objects.create(slug="second", name="Second")
    with transaction.atomic():
        record(first, "settings.changed")
        record(second, "settings.changed")
        record(first, "settings.changed")
    heads = dict(AuditChainHead.objects.values_list("chain", "last_sequence"))
    assert heads == {chain_of(first): 2, chain_of(second): 1}


def test_a_row_far_beyond_the_head_refuses_appends_and_is_named(acme, admin, caplog):
    record(acme, "settings.changed")
    with triggers_off() as cursor:
        planted = plant(cursor, acme, 1000, GARBAGE)
    caplog.set_level(logging.CRITICAL, logger="audit.chain")
    with pytest.raises(AuditLogJammed, match=f"event {planted} at sequence 1000"):
        record(acme, "settings.changed", actor=admin)
    assert AuditEvent.objects.filter(chain=chain_of(acme)).count() == 2


def test_a_caller_that_catches_the_refusal_goes_on_with_its_transaction(acme, globex):
    record(acme, "settings.changed")
    with triggers_off() as cursor:
        plant(cursor, acme, 2, GARBAGE)
    with transaction.atomic():
        with pytest.raises(AuditLogJammed):
            audit_chain.record(acme, "settings.changed")
        # Nothing was written and the transaction is sound: the next append goes through.
        assert record(globex, "settings.changed").sequence == 1
    assert AuditEvent.objects.filter(chain=chain_of(globex)).count() == 1

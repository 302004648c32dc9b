"""What `record` stores, and what `verify_chain` tells an auditor about a chain that does not
hold together. Expected values are written out, not computed by the code under test."""

import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from audit.chain import (
    PLATFORM_CHAIN,
    canonical_timestamp,
    chain_of,
    chains,
    event_hash,
    record,
    verify_chain,
)
from audit.context import AuditContext
from audit.models import GENESIS_HASH, AuditChainHead, AuditEvent, Source

from .test_verify_audit_log import triggers_off

pytestmark = pytest.mark.django_db


@pytest.fixture
def server_in_new_york(monkeypatch):
    """A server whose local time zone is not UTC."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_the_canonical_time_is_utc_whatever_the_servers_time_zone(server_in_new_york):
    moment = datetime(2025, 7, 1, 9, 30, 0, 250, tzinfo=ZoneInfo("Asia/Tokyo"))
    assert canonical_timestamp(moment) == "2025-07-01T00:30:00.000250Z"


def test_an_event_of_the_system_names_no_actor_and_no_role(acme):
    event = AuditEvent.objects.get(pk=record(acme, "request.expired").pk)
    assert (event.actor, event.actor_username, event.role, event.data) == (None, "", "", {})
    assert (event.source, event.ip_address, event.user_agent) == ("system", None, "")


def test_nul_characters_are_dropped_and_long_texts_cut_to_their_columns(acme):
    context = AuditContext(source=Source.WEB, ip_address=None, user_agent="Agent\x00" + "u" * 600)
    event = record(
        acme, "auth.sign_in_failed", actor_username="mal\x00lory" + "x" * 200, context=context
    )

    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.actor_username == ("mallory" + "x" * 200)[:150]
    assert len(stored.actor_username) == 150
    assert stored.user_agent == ("Agent" + "u" * 600)[:500]
    assert len(stored.user_agent) == 500
    # Hashed as stored, so the chain still verifies.
    assert verify_chain(chain_of(acme)).first_break is None


def test_every_chain_is_listed_once_organizations_first_and_the_platform_last(acme, globex):
    record(None, "auth.sign_in_failed", actor_username="mallory")
    record(globex, "settings.changed")
    record(acme, "settings.changed")
    record(acme, "settings.changed")
    # A chain whose events are all gone still has its head, and is still checked.
    AuditChainHead.objects.create(chain="org:999999", last_sequence=2, last_hash="a" * 64)

    expected = sorted([f"org:{acme.pk}", f"org:{globex.pk}", "org:999999"]) + [PLATFORM_CHAIN]
    assert chains() == expected


def test_a_chain_whose_events_are_all_gone_is_reported(db):
    AuditChainHead.objects.create(chain="org:999999", last_sequence=2, last_hash="a" * 64)

    report = verify_chain("org:999999")

    assert (report.chain, report.checked) == ("org:999999", 0)
    assert report.first_break.problem == "missing event"
    assert report.first_break.detail == (
        "The chain's head is at sequence 2, but the events at sequences 1 to 2 are gone."
    )


@pytest.fixture
def five(acme, admin):
    return [record(acme, "settings.changed", actor=admin, data={"n": n}) for n in range(5)]


def test_a_gap_of_several_events_names_the_first_and_last_missing_sequence(acme, five):
    with triggers_off() as cursor:
        cursor.execute(
            "DELETE FROM approvals_auditevent WHERE id IN (%s, %s)", [five[1].pk, five[2].pk]
        )

    report = verify_chain(chain_of(acme))

    assert report.chain == chain_of(acme)
    assert (report.first_break.sequence, report.first_break.event_id) == (4, five[3].pk)
    assert report.first_break.problem == "missing event"
    assert report.first_break.detail == "The chain has no event at sequences 2 to 3."


def test_a_replaced_first_event_is_named_as_not_starting_the_chain(acme, five):
    forged = AuditEvent.objects.get(pk=five[0].pk)
    forged.prev_hash = "b" * 64
    forged.hash = event_hash(forged)
    with triggers_off() as cursor:
        cursor.execute(
            "UPDATE approvals_auditevent SET prev_hash = %s, hash = %s WHERE id = %s",
            [forged.prev_hash, forged.hash, forged.pk],
        )

    report = verify_chain(chain_of(acme))

    assert (report.first_break.sequence, report.first_break.problem) == (1, "broken link")
    assert report.first_break.detail == (
        f"Its prev_hash {'b' * 64} is not the start of a chain (64 zeros) ({GENESIS_HASH}): "
        "one of the two was replaced."
    )


def test_a_walk_in_small_chunks_checks_every_event(acme, five):
    report = verify_chain(chain_of(acme), chunk_size=2)
    assert (report.checked, report.first_break) == (5, None)


def test_a_missing_last_event_is_named_by_its_sequence(acme, five):
    with triggers_off() as cursor:
        cursor.execute("DELETE FROM approvals_auditevent WHERE id = %s", [five[4].pk])

    report = verify_chain(chain_of(acme))

    assert (report.checked, report.first_break.sequence) == (4, 5)
    assert (report.first_break.event_id, report.first_break.problem) == (None, "missing event")
    assert report.first_break.detail == (
        "The chain's head is at sequence 5, but the events at sequence 5 are gone."
    )


def test_a_head_that_records_another_hash_is_a_broken_link(acme, five):
    AuditChainHead.objects.filter(chain=chain_of(acme)).update(last_hash="c" * 64)

    report = verify_chain(chain_of(acme))

    assert report.checked == 5
    assert (report.first_break.sequence, report.first_break.event_id) == (5, five[4].pk)
    assert report.first_break.problem == "broken link"
    assert report.first_break.detail == (
        f"The chain's head records hash {'c' * 64} for its last event, "
        f"which has hash {five[4].hash}."
    )


def test_a_head_that_records_another_time_is_altered(acme, five):
    last_time = AuditEvent.objects.get(pk=five[4].pk).timestamp
    AuditChainHead.objects.filter(chain=chain_of(acme)).update(
        last_timestamp=datetime(2030, 1, 2, 3, 4, 5, 6, tzinfo=ZoneInfo("UTC"))
    )

    report = verify_chain(chain_of(acme))

    assert (report.first_break.sequence, report.first_break.event_id) == (5, five[4].pk)
    assert report.first_break.problem == "altered head"
    assert report.first_break.detail == (
        "The chain's head records the time 2030-01-02T03:04:05.000006Z for its last event, "
        f"which has the time {last_time.astimezone(ZoneInfo('UTC')):%Y-%m-%dT%H:%M:%S.%fZ}."
    )


def test_a_head_with_a_time_but_no_event_is_altered(db):
    AuditChainHead.objects.create(
        chain="org:999999",
        last_sequence=0,
        last_hash=GENESIS_HASH,
        last_timestamp=datetime(2030, 1, 2, 3, 4, 5, 6, tzinfo=ZoneInfo("UTC")),
    )

    report = verify_chain("org:999999")

    assert report.first_break.problem == "altered head"
    assert report.first_break.detail == (
        "The chain's head records the time 2030-01-02T03:04:05.000006Z for its last event, "
        "which has the time of no event."
    )


def test_a_chain_whose_head_was_deleted_is_reported(acme, five):
    AuditChainHead.objects.filter(chain=chain_of(acme)).delete()

    report = verify_chain(chain_of(acme))

    assert (report.first_break.sequence, report.first_break.event_id) == (1, five[0].pk)
    assert report.first_break.problem == "no head"
    assert report.first_break.detail == (
        "The chain has events but no head (approvals_auditchainhead): it was deleted."
    )

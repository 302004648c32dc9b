"""The audit chain: hashes over a canonical form, one chain per organization, append-only."""

import hashlib
import json
import threading
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, OperationalError, connection, connections, transaction

from actions.sync import sync_catalog
from audit.chain import (
    PLATFORM_CHAIN,
    canonical,
    canonical_timestamp,
    chain_of,
    event_hash,
    lock_head,
    record,
    verify_chain,
)
from audit.context import AuditContext
from audit.models import GENESIS_HASH, AuditChainHead, AuditEvent, Source

pytestmark = pytest.mark.django_db

WEB = AuditContext(source=Source.WEB, ip_address="192.0.2.10", user_agent="pytest-browser")


def reloaded(event):
    return AuditEvent.objects.get(pk=event.pk)


def test_each_event_links_to_the_one_before_it(acme, admin):
    events = [record(acme, "settings.changed", actor=admin, role="admin") for _ in range(3)]
    assert [e.sequence for e in events] == [1, 2, 3]
    assert events[0].prev_hash == GENESIS_HASH
    assert events[1].prev_hash == events[0].hash
    assert events[2].prev_hash == events[1].hash
    head = AuditChainHead.objects.get(chain=chain_of(acme))
    assert (head.last_sequence, head.last_hash) == (3, events[2].hash)


def documented_hash(fields: dict) -> str:
    """The hash as the module doc tells an auditor to compute it, written out independently."""
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_the_hash_is_sha256_of_the_sorted_compact_utc_serialization(acme, admin):
    moment = datetime(2025, 1, 31, 23, 59, 59, 123456, tzinfo=UTC)
    with mock.patch("django.utils.timezone.now", return_value=moment):
        event = record(
            acme,
            "settings.changed",
            actor=admin,
            role="admin",
            data={"b": 1, "a": "é"},
            context=WEB,
        )
    documented = {
        "chain": f"org:{acme.pk}",
        "sequence": 1,
        "timestamp": "2025-01-31T23:59:59.123456Z",
        "organization_id": acme.pk,
        "actor_id": admin.pk,
        "actor_username": "acme-admin",
        "role": "admin",
        "verb": "settings.changed",
        "request_id": None,
        "action_key": "",
        "data": {"a": "é", "b": 1},
        "source": "web",
        "ip_address": "192.0.2.10",
        "user_agent": "pytest-browser",
        "prev_hash": "0" * 64,
    }
    text = json.dumps(documented, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert text.startswith(f'{{"action_key":"","actor_id":{admin.pk},"actor_username":"acme-admin"')
    assert canonical(event).decode() == text
    assert event.hash == documented_hash(documented)
    assert reloaded(event).hash == documented_hash(documented)


def test_each_hash_covers_the_hash_of_the_event_before_it(acme, operator):
    """Replacing an event would change every hash after it: the link is inside the hash."""
    moment = datetime(2025, 6, 1, 8, 0, 0, 5, tzinfo=ZoneInfo("Europe/Paris"))
    context = AuditContext(
        source=Source.EMAIL, ip_address="2001:DB8:0:0:0:0:0:1", user_agent="Mail ü"
    )
    with mock.patch("django.utils.timezone.now", return_value=moment):
        first = record(acme, "settings.changed", actor=operator, data={"n": 2.0}, context=context)
        second = record(acme, "settings.changed", actor=operator, data={"n": 2.0}, context=context)

    def documented(sequence: int, prev_hash: str) -> dict:
        return {
            "chain": f"org:{acme.pk}",
            "sequence": sequence,
            "timestamp": "2025-06-01T06:00:00.000005Z",
            "organization_id": acme.pk,
            "actor_id": operator.pk,
            "actor_username": "operator",
            "role": "",
            "verb": "settings.changed",
            "request_id": None,
            "action_key": "",
            "data": {"n": 2},
            "source": "email",
            "ip_address": "2001:db8::1",
            "user_agent": "Mail ü",
            "prev_hash": prev_hash,
        }

    first_hash = documented_hash(documented(1, GENESIS_HASH))
    second_hash = documented_hash(documented(2, first_hash))
    assert (first.hash, second.hash) == (first_hash, second_hash)
    assert second.prev_hash == first_hash


def test_the_hash_survives_a_round_trip_through_the_database(acme, admin):
    awkward = {
        "z": {"nested": [3, 2, 1], "keys": {"b": None, "a": True}},
        "floats": [0.1, 1.0, 1e20, 2.5e-7, -0.0],
        "big": 2**70,
        "text": 'Grüße, 東京 — "quoted" \\ back\nslash',
        "when": datetime(2025, 6, 1, 12, 0, 0, 999999, tzinfo=UTC),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "amount": Decimal("12.50"),
    }
    for address in ["2001:DB8:0:0:0:0:0:1", "::ffff:192.0.2.1", "::1.2.3.4", "203.0.113.9"]:
        context = AuditContext(source=Source.EMAIL, ip_address=address, user_agent="UA ü")
        event = record(acme, "settings.changed", actor=admin, data=awkward, context=context)
        stored = reloaded(event)
        assert stored.timestamp == event.timestamp
        assert stored.timestamp.microsecond == event.timestamp.microsecond
        assert event_hash(stored) == stored.hash == event.hash, address
    assert verify_chain(chain_of(acme)).first_break is None


def test_timestamps_never_go_back_along_a_chain(acme, globex):
    late = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    with mock.patch("django.utils.timezone.now", return_value=late):
        first = record(acme, "settings.changed")
    with mock.patch("django.utils.timezone.now", return_value=late.replace(hour=11)):
        behind = record(acme, "settings.changed")  # a server whose clock is an hour slow
        elsewhere = record(globex, "settings.changed")
    assert behind.timestamp == first.timestamp == late
    assert elsewhere.timestamp == late.replace(hour=11)
    assert verify_chain(chain_of(acme)).first_break is None


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2025, 1, 31, 23, 59, 59, 0, tzinfo=UTC),
        datetime(2025, 7, 1, 2, 3, 4, 5, tzinfo=ZoneInfo("Europe/Paris")),
        datetime(1999, 12, 31, 23, 0, 0, 999999, tzinfo=ZoneInfo("America/New_York")),
    ],
)
def test_the_canonical_time_is_utc_to_the_microsecond(moment):
    assert canonical_timestamp(moment) == moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_not_a_number_is_refused_before_anything_is_written(acme):
    with pytest.raises(ValueError):
        record(acme, "settings.changed", data={"ratio": float("nan")})
    assert not AuditEvent.objects.exists()


def test_each_organization_has_its_own_chain(acme, globex):
    first_acme = record(acme, "settings.changed")
    first_globex = record(globex, "settings.changed")
    second_acme = record(acme, "settings.changed")
    platform = record(None, "auth.sign_in_failed", actor_username="nobody")
    assert (first_acme.sequence, second_acme.sequence, first_globex.sequence) == (1, 2, 1)
    assert first_globex.prev_hash == GENESIS_HASH
    assert second_acme.prev_hash == first_acme.hash
    assert (platform.chain, platform.organization, platform.sequence) == (PLATFORM_CHAIN, None, 1)
    assert first_acme.chain == f"org:{acme.pk}"


class TestAppendOnly:
    def test_the_model_refuses_to_change_an_event(self, acme):
        event = record(acme, "settings.changed")
        event.verb = "request.approved"
        with pytest.raises(ValidationError, match="append-only"):
            event.save()

    def test_the_model_refuses_to_delete_an_event(self, acme):
        event = record(acme, "settings.changed")
        with pytest.raises(ValidationError, match="append-only"):
            event.delete()

    def test_querysets_refuse_update_and_delete(self, acme):
        record(acme, "settings.changed")
        with pytest.raises(ValidationError, match="append-only"):
            AuditEvent.objects.filter(chain=chain_of(acme)).update(verb="x")
        with pytest.raises(ValidationError, match="append-only"):
            AuditEvent.objects.all().delete()
        with pytest.raises(ValidationError, match="append-only"):
            AuditEvent.objects.bulk_update(list(AuditEvent.objects.all()), ["verb"])
        assert AuditEvent.objects.get().verb == "settings.changed"

    @pytest.mark.parametrize(
        "statement",
        [
            "UPDATE approvals_auditevent SET verb = 'request.approved'",
            "UPDATE approvals_auditevent SET data = '{}', hash = prev_hash",
            "DELETE FROM approvals_auditevent",
        ],
    )
    def test_the_database_refuses_update_and_delete(self, acme, statement):
        """On SQLite and on PostgreSQL alike, whoever runs the statement."""
        event = record(acme, "settings.changed", data={"x": 1})
        with (
            pytest.raises(IntegrityError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(statement)
        assert reloaded(event).hash == event.hash
        assert reloaded(event).verb == "settings.changed"

    def test_inserting_events_and_moving_chain_heads_still_works(self, acme):
        record(acme, "settings.changed")
        AuditChainHead.objects.filter(chain=chain_of(acme)).update(last_sequence=1)
        assert record(acme, "settings.changed").sequence == 2


@pytest.fixture(scope="module")
def catalog_restored_afterwards(django_db_blocker):
    """Transactional tests empty every table; the tests after them expect the actions catalog."""
    yield
    with django_db_blocker.unblock():
        sync_catalog()


def _close_connection_after(function):
    def run(*args):
        try:
            function(*args)
        finally:
            connections.close_all()

    return run


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_eight_writers_at_once_leave_one_intact_chain(
    catalog_restored_afterwards, requires_postgresql, acme
):
    start = threading.Barrier(8)
    failures: list[BaseException] = []

    @_close_connection_after
    def append(n: int) -> None:
        try:
            start.wait()
            for i in range(25):
                record(acme, "settings.changed", data={"writer": n, "i": i})
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=append, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert failures == []
    sequences = list(
        AuditEvent.objects.filter(chain=chain_of(acme))
        .order_by("sequence")
        .values_list("sequence", flat=True)
    )
    assert sequences == list(range(1, 201))
    report = verify_chain(chain_of(acme))
    assert (report.checked, report.first_break) == (200, None)


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_a_locked_chain_does_not_hold_up_another_organization(
    catalog_restored_afterwards, requires_postgresql, acme, globex
):
    record(acme, "settings.changed")
    locked, release = threading.Event(), threading.Event()

    @_close_connection_after
    def hold_acme() -> None:
        with transaction.atomic():
            lock_head(chain_of(acme))
            locked.set()
            release.wait(timeout=30)

    holder = threading.Thread(target=hold_acme)
    holder.start()
    try:
        assert locked.wait(timeout=10)
        blocked: list[BaseException] = []

        @_close_connection_after
        def append_to_acme() -> None:
            try:
                with transaction.atomic():
                    with connection.cursor() as cursor:
                        cursor.execute("SET LOCAL lock_timeout = '300ms'")
                    record(acme, "settings.changed")
            except OperationalError as error:
                blocked.append(error)

        other = threading.Thread(target=append_to_acme)
        other.start()
        other.join(timeout=10)
        assert len(blocked) == 1 and "lock timeout" in str(blocked[0])

        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '2s'")
            assert record(globex, "settings.changed").sequence == 1
    finally:
        release.set()
        holder.join(timeout=10)
    assert record(acme, "settings.changed").sequence == 2

"""Verification hashes an event from its database row, without building the event: that
serialization must be byte for byte the documented one (`canonical_values`), whatever the
values, or existing chains would stop verifying."""

import json
from datetime import UTC, datetime, timedelta, timezone
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from audit.chain import (
    HASHED_FIELDS,
    RowHasher,
    _stored_timestamp,
    canonical_timestamp,
    canonical_values,
    chain_of,
    json_data,
    record,
    verify_chain,
)
from audit.context import AuditContext
from audit.models import AuditEvent, Source

# Any character PostgreSQL can store: no NUL, no lone surrogate; control characters, quotes,
# backslashes, line and paragraph separators and astral characters included.
texts = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=40,
)
hostile_floats = st.sampled_from([1.0, 1e20, 0.1, -0.0, 2.5e-7, 1e-300, 123456789.5, -3.0])
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | hostile_floats
    | texts
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
addresses = st.one_of(
    st.none(),
    st.ip_addresses().map(str),
    st.ip_addresses(v=6).map(lambda address: address.exploded.upper()),
    st.ip_addresses(v=4).map(lambda address: f"::ffff:{address}"),
    st.sampled_from(["not an address", "fe80::1%eth0", " 192.0.2.1 ", ""]),
)
moments = st.datetimes(
    min_value=datetime(1000, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from([UTC, ZoneInfo("Asia/Kolkata"), timezone(timedelta(hours=-5))]),
)
identifiers = st.none() | st.integers(min_value=1, max_value=2**62)


def integers_as_floats(value):
    """The same JSON value with its integers written as 1.0: how a hand-edited or older row may
    hold them, which reads back as integers all the same."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**53:
        return float(value)
    if isinstance(value, dict):
        return {key: integers_as_floats(item) for key, item in value.items()}
    if isinstance(value, list):
        return [integers_as_floats(item) for item in value]
    return value


def row_of(values: dict, data_text: str) -> tuple:
    """The row verification reads, in RowHasher's column order."""
    return (
        1,
        values["sequence"],
        "",
        values["prev_hash"],
        canonical_timestamp(values["timestamp"]),
        values["organization_id"],
        values["actor_id"],
        values["actor_username"],
        values["role"],
        values["verb"],
        values["request_id"],
        values["action_key"],
        data_text,
        values["source"],
        values["ip_address"],
        values["user_agent"],
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chain=texts,
    sequence=st.integers(min_value=1, max_value=2**62),
    timestamp=moments,
    organization_id=identifiers,
    actor_id=identifiers,
    request_id=identifiers,
    strings=st.tuples(texts, texts, texts, texts, texts, texts, texts),
    data=st.dictionaries(texts, json_values, max_size=5),
    ip_address=addresses,
)
@example(
    chain="org:1",
    sequence=1,
    timestamp=datetime(2025, 1, 31, 23, 59, 59, 0, tzinfo=UTC),
    organization_id=None,
    actor_id=None,
    request_id=None,
    strings=('"quoted" \\ back', "é\u2028\u2029", "\x01\x1f\x7f", "東京", "🙂", "", "\t\n\r"),
    data={"floats": [1.0, 1e20, 0.1], "nested": {"b": [None, {"a": "ü"}]}, "": ""},
    ip_address="2001:DB8:0:0:0:0:0:1",
)
def test_a_row_serializes_exactly_as_its_fields_do(
    chain, sequence, timestamp, organization_id, actor_id, request_id, strings, data, ip_address
):
    actor_username, role, verb, action_key, source, user_agent, prev_hash = strings
    values = {
        "chain": chain,
        "sequence": sequence,
        "timestamp": timestamp,
        "organization_id": organization_id,
        "actor_id": actor_id,
        "actor_username": actor_username,
        "role": role,
        "verb": verb,
        "request_id": request_id,
        "action_key": action_key,
        "data": json_data(data),
        "source": source,
        "ip_address": ip_address,
        "user_agent": user_agent,
        "prev_hash": prev_hash,
    }
    assert set(values) == set(HASHED_FIELDS)
    expected = canonical_values(values)
    # Stored as SQLite keeps it (Django's encoding), as PostgreSQL writes jsonb back, with
    # integers written as floats, and with white space around it.
    for data_text in (
        json.dumps(values["data"]),
        json.dumps(values["data"], ensure_ascii=False, separators=(", ", ": ")),
        json.dumps(integers_as_floats(values["data"])),
        f" {json.dumps(values['data'])}\n",  # as a hand-edited row may hold it
        f"{json.dumps(values['data'])} ",
    ):
        assert RowHasher(chain).canonical(row_of(values, data_text), row_of(values, "")[4]) == (
            expected
        )


def test_the_same_address_twice_serializes_the_same(db):
    hasher = RowHasher("org:1")
    first = hasher.address("2001:DB8::1")
    assert hasher.address("2001:DB8::1") == first == '"2001:db8::1"'
    assert hasher.address(None) == "null" == hasher.address("not an address")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "moment",
    [
        datetime(2025, 1, 31, 23, 59, 59, 0, tzinfo=UTC),  # no fraction stored on SQLite
        datetime(2025, 7, 1, 2, 3, 4, 5, tzinfo=ZoneInfo("Europe/Paris")),
        datetime(1999, 12, 31, 23, 0, 0, 999999, tzinfo=ZoneInfo("America/New_York")),
        datetime(999, 3, 4, 5, 6, 7, 80, tzinfo=UTC),
    ],
)
def test_events_read_back_from_the_database_verify(acme, admin, moment):
    hostile = AuditContext(
        source=Source.EMAIL, ip_address="::FFFF:192.0.2.1", user_agent='UA "ü" \\ \x01\u2028'
    )
    with mock.patch("django.utils.timezone.now", return_value=moment):
        events = [
            record(
                acme,
                "settings.changed",
                actor=admin,
                actor_username='mal"lory\\\n東京',
                data={"n": n, "f": [1.0, 1e20, 0.1, -0.0], "t": "\u0007\x1f", "z": {"b": None}},
                context=hostile if n % 2 else AuditContext(source=Source.WEB),
            )
            for n in range(3)
        ]
    stored = AuditEvent.objects.get(pk=events[0].pk)
    assert canonical_timestamp(stored.timestamp) == canonical_timestamp(moment)
    report = verify_chain(chain_of(acme))
    assert (report.checked, report.first_break) == (3, None)


@pytest.mark.parametrize(
    "stored, expected",
    [
        # With its zone: no fraction, or one without its trailing zeros.
        ("2025-01-31 23:59:59+00", "2025-01-31T23:59:59.000000Z"),
        ("2025-01-31 23:59:59.1234+00", "2025-01-31T23:59:59.123400Z"),
        ("0999-03-04 05:06:07.00008+00", "0999-03-04T05:06:07.000080Z"),
        # In another time zone.
        ("2025-01-31 18:59:59.5-05", "2025-01-31T23:59:59.500000Z"),
        ("2025-02-01 05:29:59.999999+05:30", "2025-01-31T23:59:59.999999Z"),
        # SQLite: UTC without a zone, as text or already a datetime.
        ("2025-01-31 23:59:59", "2025-01-31T23:59:59.000000Z"),
        ("2025-01-31 23:59:59.000001", "2025-01-31T23:59:59.000001Z"),
        (datetime(2025, 1, 31, 23, 59, 59, 250), "2025-01-31T23:59:59.000250Z"),
    ],
)
def test_a_stored_time_is_read_in_utc_to_the_microsecond(stored, expected):
    assert _stored_timestamp(stored) == expected

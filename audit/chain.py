"""Writing and checking audit events. Every state change calls `record` inside its own transaction.

Events form a hash chain per organization: each stores the hash of the one before it in its
chain and its own SHA-256 over a canonical serialization of its fields. Appends to one chain
are serialized by locking that chain's head row; different chains do not wait on each other.

The canonical serialization, which an auditor can reproduce from a CSV export: a JSON object
of the fields in HASHED_FIELDS, keys sorted, no spaces (separators "," and ":"), non-ASCII
characters as themselves, encoded in UTF-8; `timestamp` in UTC as 2025-01-31T23:59:59.123456Z,
`ip_address` in its shortest form (RFC 5952 for IPv6), integral numbers in `data` as integers.
"""

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

from django.core.exceptions import PermissionDenied
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from responseportal.http import normalized_ip
from responseportal.models import Organization
from responseportal.refusals import TransitionRefused

from .context import SYSTEM, AuditContext
from .models import GENESIS_HASH, AuditChainHead, AuditEvent

logger = logging.getLogger(__name__)

PLATFORM_CHAIN = "platform"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
HASHED_FIELDS = (
    "chain",
    "sequence",
    "timestamp",
    "organization_id",
    "actor_id",
    "actor_username",
    "role",
    "verb",
    "request_id",
    "action_key",
    "data",
    "source",
    "ip_address",
    "user_agent",
    "prev_hash",
)

# The verbs the audit log can be filtered by. A new kind of event adds its verb here.
VERBS = (
    "request.submitted",
    "request.auto_approved",
    "request.approval_added",
    "request.approved",
    "request.rejected",
    "request.expired",
    "request.cancelled",
    "request.reminded",
    "request.break_glass",
    "request.reviewed",
    "request.review_overdue",
    "execution.queued",
    "execution.started",
    "execution.resumed",
    "execution.redispatched",
    "execution.succeeded",
    "execution.partially_succeeded",
    "execution.failed",
    "execution.terminated",
    "remote_shell.ended",
    "remote_shell.expired",
    "settings.changed",
    "scope.imported",
    "script.uploaded",
    "auth.signed_in",
    "auth.signed_out",
    "auth.sign_in_failed",
    "auth.locked_out",
    "auth.attempts_counted",
    "audit.exported",
    "api_token.created",
    "api_token.revoked",
    "second_factor.added",
    "second_factor.removed",
    "second_factor.reset",
    "recovery_codes.generated",
    "organization.second_factor_policy_changed",
    # Single sign-on keeps a member's role in step with the identity provider's groups.
    "membership.created",
    "membership.changed",
    "membership.removed",
)


def chain_of(organization: Organization | None) -> str:
    return f"org:{organization.pk}" if organization is not None else PLATFORM_CHAIN


def _integral_floats_as_ints(value: Any) -> Any:
    # PostgreSQL's jsonb reads 1.0 and 1e20 back as integers; SQLite keeps them as written.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _integral_floats_as_ints(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral_floats_as_ints(item) for item in value]
    return value


def json_data(data: Mapping | None) -> dict:
    """`data` as it will read back from either database: JSON types only, no NaN."""
    encoded = json.dumps(data or {}, cls=DjangoJSONEncoder, allow_nan=False)
    return _integral_floats_as_ints(json.loads(encoded))


_CANONICAL_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(value: Any) -> str:
    return _CANONICAL_ENCODER.encode(value)


def canonical_data(data: Any) -> str:
    """`data` as it appears inside the canonical serialization (and the CSV export)."""
    return canonical_json(_integral_floats_as_ints(data))


def canonical_timestamp(moment: datetime) -> str:
    """TIME_FORMAT, written the quick way: 2025-01-31T23:59:59.123456+00:00 less its offset."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def canonical_values(values: Mapping[str, Any]) -> bytes:
    """The bytes an event's hash is computed over, from its field values (see the module doc)."""
    hashed = {name: values[name] for name in HASHED_FIELDS}
    hashed["timestamp"] = canonical_timestamp(hashed["timestamp"])
    hashed["ip_address"] = normalized_ip(hashed["ip_address"])
    hashed["data"] = _integral_floats_as_ints(hashed["data"])
    return canonical_json(hashed).encode()


def canonical(event: AuditEvent) -> bytes:
    return canonical_values({name: getattr(event, name) for name in HASHED_FIELDS})


def hash_values(values: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_values(values)).hexdigest()


def event_hash(event: AuditEvent) -> str:
    return hashlib.sha256(canonical(event)).hexdigest()


# An event as verification reads it: one tuple per row, in this order. `timestamp` comes
# already canonical from PostgreSQL, as stored from SQLite; `data` as JSON text.
_ROW_LEADS = ("id", "sequence", "hash", "prev_hash", "timestamp")
ROW_COLUMNS = (
    *_ROW_LEADS,
    *(name for name in HASHED_FIELDS if name not in {"chain", *_ROW_LEADS}),
)
_ID, _SEQUENCE, _HASH, _PREV_HASH, _TIMESTAMP = range(len(_ROW_LEADS))
# canonical_values, written out: the keys in sorted order, each value as json.dumps writes it.
_CANONICAL = (
    '{"action_key":%s,"actor_id":%s,"actor_username":%s,"chain":%s,"data":%s,'
    '"ip_address":%s,"organization_id":%s,"prev_hash":%s,"request_id":%s,"role":%s,'
    '"sequence":%d,"source":%s,"timestamp":"%s","user_agent":%s,"verb":%s}'
)
# The strings of json.dumps(..., ensure_ascii=False): quotes, backslashes and control characters
# escaped, everything else as itself.
_string = json.encoder.encode_basestring


def _number(text: str) -> float | int:
    # What _integral_floats_as_ints makes of a JSON number with a fraction or an exponent.
    value = float(text)
    return int(value) if value.is_integer() else value


_DATA_DECODER = json.JSONDecoder(parse_float=_number)
# canonical_json's encoder itself, made once rather than per call, without the check for
# circular references that a value just parsed from JSON text cannot have.
_data_chunks = json.encoder.c_make_encoder(
    None, _CANONICAL_ENCODER.default, _string, None, ":", ",", True, False, True
)


def _canonical_data_text(text: str) -> str:
    try:
        value, end = _DATA_DECODER.scan_once(text, 0)
    except StopIteration:  # leading white space: the slower, general parse
        value, end = _DATA_DECODER.decode(text), len(text)
    if end != len(text):
        value = _DATA_DECODER.decode(text)  # raises unless only white space follows
    return "".join(_data_chunks(value, 0))


class RowHasher:
    """The hash of an event from its row (ROW_COLUMNS), equal to `hash_values` of its fields.

    Built for verifying millions of events: no dict per event, no datetime, one JSON parse
    (of `data`), and each distinct IP address normalized once.
    """

    def __init__(self, chain: str):
        self.chain = _string(chain)
        self.addresses: dict[str | None, str] = {}

    def address(self, value: str | None) -> str:
        encoded = self.addresses.get(value)
        if encoded is None:
            normalized = normalized_ip(value)
            encoded = "null" if normalized is None else _string(normalized)
            if len(self.addresses) < 100_000:
                self.addresses[value] = encoded
        return encoded

    def canonical(self, row: tuple, timestamp: str) -> bytes:
        """The canonical serialization; `timestamp` as TIME_FORMAT writes it."""
        (
            _,
            sequence,
            _,
            prev_hash,
            _,
            organization_id,
            actor_id,
            actor_username,
            role,
            verb,
            request_id,
            action_key,
            data,
            source,
            ip_address,
            user_agent,
        ) = row
        address = self.addresses.get(ip_address) or self.address(ip_address)
        return (
            _CANONICAL
            % (
                _string(action_key),
                "null" if actor_id is None else actor_id,
                _string(actor_username),
                self.chain,
                "{}" if data == "{}" else _canonical_data_text(data),
                address,
                "null" if organization_id is None else organization_id,
                _string(prev_hash),
                "null" if request_id is None else request_id,
                _string(role),
                sequence,
                _string(source),
                timestamp,
                _string(user_agent),
                _string(verb),
            )
        ).encode()

    def hash(self, row: tuple, timestamp: str) -> str:
        return hashlib.sha256(self.canonical(row, timestamp)).hexdigest()


def _without_nul(text: str, length: int) -> str:
    # PostgreSQL text cannot hold NUL characters.
    return text.replace("\x00", "")[:length]


# The head, and the first event beyond it (there is none unless someone wrote behind the
# portal's back with the triggers of audit migration 0003 off): one statement, one round trip.
_HEAD_AND_BEYOND = (
    "SELECT head.last_sequence, head.last_hash, head.last_timestamp, "
    "(SELECT beyond.id FROM approvals_auditevent beyond WHERE beyond.chain = head.chain "
    "AND beyond.sequence > head.last_sequence ORDER BY beyond.sequence LIMIT 1) "
    "FROM approvals_auditchainhead head WHERE head.chain = %s"
)
_NEW_HEAD = (
    "INSERT INTO approvals_auditchainhead (chain, last_sequence, last_hash) VALUES (%s, 0, %s) "
    "ON CONFLICT (chain) DO NOTHING"
)
_INSERTED_FIELDS = [field for field in AuditEvent._meta.concrete_fields if not field.primary_key]
_INSERT = "INSERT INTO approvals_auditevent ({}) VALUES ".format(  # noqa: S608 - our columns
    ", ".join(f'"{field.column}"' for field in _INSERTED_FIELDS)
)
_ROW = "(" + ", ".join(["%s"] * len(_INSERTED_FIELDS)) + ")"


def _as_aware(moment: datetime | str | None) -> datetime | None:
    # A raw SQLite cursor reads the UTC time Django stored without its zone.
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if moment is not None and moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def _lock_head_and_look_beyond(chain: str) -> tuple[AuditChainHead, int | None]:
    """The chain's head, locked until the end of the transaction (created if new), and the id
    of the first event beyond it, if any."""
    query = _HEAD_AND_BEYOND
    if connection.features.has_select_for_update_of:
        query += " FOR UPDATE OF head"
    # SQLite has no row locks: its transactions take the database's write lock when they begin.
    with connection.cursor() as cursor:
        cursor.execute(query, [chain])
        row = cursor.fetchone()
        if row is None:
            # A new chain. Another writer creating it at the same moment makes this a no-op
            # that waits for its commit; the head is then locked like any other.
            cursor.execute(_NEW_HEAD, [chain, GENESIS_HASH])
            cursor.execute(query, [chain])
            row = cursor.fetchone()
    last_sequence, last_hash, last_timestamp, beyond = row
    head = AuditChainHead(
        chain=chain,
        last_sequence=last_sequence,
        last_hash=last_hash,
        last_timestamp=_as_aware(last_timestamp),
    )
    return head, beyond


def lock_head(chain: str) -> AuditChainHead:
    """The chain's head, locked until the end of the transaction (created if new)."""
    return _lock_head_and_look_beyond(chain)[0]


def link(head: AuditChainHead, event: AuditEvent) -> AuditEvent:
    """Make the unsaved `event` the next link after `head`, and move `head` to it (the stored
    head follows by itself when the event is inserted: see audit migration 0003).

    The event gets its chain, sequence, prev_hash and hash. Its timestamp never goes back
    along a chain: should the clock (or another server's) be behind the last event's, the event
    takes that time. The log's time filter relies on it.
    """
    if head.last_timestamp is not None and event.timestamp < head.last_timestamp:
        event.timestamp = head.last_timestamp
    event.chain = head.chain
    event.sequence = head.last_sequence + 1
    event.prev_hash = head.last_hash
    event.hash = event_hash(event)
    head.last_sequence, head.last_hash = event.sequence, event.hash
    head.last_timestamp = event.timestamp
    return event


class AuditLogJammed(TransitionRefused, PermissionDenied):
    """The chain holds an event the portal did not write after its head, so nothing more can be
    appended to it: the change that wanted to record an event is refused, whole.

    Views that catch TransitionRefused show the message; any other page answers 403 with it.
    """


def _refuse_jammed(head: AuditChainHead, beyond: int) -> NoReturn:
    """Raise AuditLogJammed, with an alert: the chain has event `beyond` after its head."""
    found = AuditEvent.objects.only("sequence").get(pk=beyond)
    logger.critical(
        "Audit chain %s is jammed: event %s at sequence %s lies beyond its head (sequence %s). "
        "Every change that records an event in this chain is refused until it is resolved.",
        head.chain,
        found.pk,
        found.sequence,
        head.last_sequence,
    )
    raise AuditLogJammed(
        f"Nothing was changed: the audit log cannot record it. Chain {head.chain} has event "
        f"{found.pk} at sequence {found.sequence}, beyond its last recorded event (sequence "
        f"{head.last_sequence}), that the portal did not write. The operators have been "
        "alerted; `manage.py verify_audit_log` names the event."
    )


def _insert(events: list[AuditEvent]) -> None:
    """INSERT the linked events and give them their ids, as `bulk_create` would, without
    compiling a query for each append."""

    def values(event: AuditEvent) -> list:
        return [
            field.get_db_prep_save(getattr(event, field.attname), connection)
            for field in _INSERTED_FIELDS
        ]

    with connection.cursor() as cursor:
        if connection.features.can_return_rows_from_bulk_insert:
            size = connection.ops.bulk_batch_size(_INSERTED_FIELDS, events)
            for start in range(0, len(events), size):
                batch = events[start : start + size]
                cursor.execute(
                    _INSERT + ", ".join([_ROW] * len(batch)) + " RETURNING id",
                    [value for event in batch for value in values(event)],
                )
                for event, (pk,) in zip(batch, cursor.fetchall(), strict=True):
                    event.pk = pk
        else:  # SQLite before 3.35: a row at a time, in process
            for event in events:
                cursor.execute(_INSERT + _ROW, values(event))
                event.pk = cursor.lastrowid
    for event in events:
        event._state.adding, event._state.db = False, connection.alias


def append(organization: Organization | None, events: Iterable[AuditEvent]) -> list[AuditEvent]:
    """Append unsaved events, in order, to the organization's chain (the platform chain without
    one). The one way events are written: by `record`, `seed_audit_events` and the benchmark
    alike.

    Their fields must already read back as stored (see `record`). Called inside a transaction,
    the chain's head stays locked until that transaction ends; outside one, the append is its
    own transaction. Events for several organizations in one transaction should be appended in
    the order of the organizations' ids, so that two such transactions cannot deadlock.

    Two statements: lock the head, insert. The triggers of audit migration 0003 check that the
    events continue the chain and move its head. No savepoint either: the only refusal,
    AuditLogJammed, comes before anything is written, so a caller that catches it may go on
    with its transaction.

    Raises AuditLogJammed (and logs a critical alert) if the chain holds an event beyond its
    head, which only someone writing to the database behind the portal's back can put there.
    """
    if not connection.in_atomic_block:
        with transaction.atomic():
            return append(organization, events)
    head, beyond = _lock_head_and_look_beyond(chain_of(organization))
    if beyond is not None:
        _refuse_jammed(head, beyond)
    linked = [link(head, event) for event in events]
    if linked:
        _insert(linked)
    return linked


def record(
    organization: Organization | None,
    verb: str,
    *,
    actor=None,
    actor_username: str | None = None,
    role: str = "",
    action_request=None,
    data: dict | None = None,
    context: AuditContext = SYSTEM,
) -> AuditEvent:
    """Append one event about `action_request` (or none) to the organization's chain.

    `actor_username` defaults to the actor's; a failed sign-in gives the username tried.
    """
    if actor_username is None:
        actor_username = actor.get_username() if actor is not None else ""
    if context.api_token:
        data = {**(data or {}), "api_token": context.api_token}
    if context.second_factor:
        data = {**(data or {}), "second_factor": context.second_factor}
    event = AuditEvent(
        organization=organization,
        timestamp=timezone.now(),
        actor=actor,
        actor_username=_without_nul(actor_username, 150),
        role=role,
        verb=verb,
        request=action_request,
        action_key=action_request.action.key if action_request is not None else "",
        # Stored exactly as it will read back, so the hash can be checked later.
        data=json_data(data),
        source=context.source,
        ip_address=normalized_ip(context.ip_address),
        user_agent=_without_nul(context.user_agent, 500),
    )
    return append(organization, [event])[0]


@dataclass(frozen=True)
class ChainBreak:
    """The first place where a chain does not hold together, and what does not match."""

    chain: str
    sequence: int
    event_id: int | None
    # "altered content", "missing event", "broken link", "event beyond the head",
    # "altered head" or "no head"
    problem: str
    detail: str

    def __str__(self) -> str:
        where = f"event {self.event_id}" if self.event_id is not None else "no event"
        return (
            f"Chain {self.chain}, sequence {self.sequence} ({where}): {self.problem}. {self.detail}"
        )


@dataclass(frozen=True)
class ChainReport:
    chain: str
    checked: int
    first_break: ChainBreak | None


def chains() -> list[str]:
    """Every chain with a head or an event, the platform chain last."""
    found = set(AuditChainHead.objects.values_list("chain", flat=True))
    found |= set(AuditEvent.objects.order_by().values_list("chain", flat=True).distinct())
    return sorted(found, key=lambda chain: (chain == PLATFORM_CHAIN, chain))


def _stored_timestamp(value: datetime | str) -> str:
    """TIME_FORMAT of a timestamp as a raw SQLite cursor reads it (UTC, with or without zone)."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return canonical_timestamp(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


_ROW_SELECT = {
    # The database writes the canonical time itself.
    "postgresql": ", ".join(ROW_COLUMNS).replace(
        "timestamp", """to_char("timestamp" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""
    ),
    "sqlite": ", ".join(f'"{column}"' for column in ROW_COLUMNS),
}


def _rows_sql(where: str) -> dict[str, str]:
    return {
        vendor: f"SELECT {columns} FROM approvals_auditevent WHERE chain = %s AND {where}"  # noqa: S608
        for vendor, columns in _ROW_SELECT.items()
    }


# One page of a chain's events in sequence order, keyset-paged: (chain, after, up to, limit).
_PAGE_SQL = _rows_sql("sequence > %s AND sequence <= %s ORDER BY sequence LIMIT %s")
# The last event at or before a sequence: (chain, sequence).
_LAST_SQL = _rows_sql("sequence <= %s ORDER BY sequence DESC LIMIT 1")


class _Walk:
    """A walk along one chain in sequence order: where it is, and the first break it met."""

    def __init__(self, chain: str):
        self.chain = chain
        self.checked = 0
        self.expected_sequence = 1
        self.previous_hash = GENESIS_HASH
        self.previous_id: int | None = None
        # TIME_FORMAT of the last event walked.
        self.previous_timestamp: str | None = None
        self.first_break: ChainBreak | None = None
        self.hasher = RowHasher(chain)
        self.timestamp_of = None if connection.vendor == "postgresql" else _stored_timestamp

    def report(self) -> ChainReport:
        return ChainReport(self.chain, self.checked, self.first_break)

    def start_after(self, sequence: int) -> None:
        """Stand where a walk from the chain's start stands once it has checked every event up
        to `sequence` and found them intact: just after the last of them that exists."""
        with connection.cursor() as cursor:
            cursor.execute(_LAST_SQL[connection.vendor], [self.chain, sequence])
            row = cursor.fetchone()
        if row is not None:
            timestamp = row[_TIMESTAMP] if self.timestamp_of is None else self.timestamp_of(row[4])
            self.expected_sequence, self.previous_hash = row[_SEQUENCE] + 1, row[_HASH]
            self.previous_id, self.previous_timestamp = row[_ID], timestamp

    def state(self) -> tuple:
        """What a walk over part of a chain found, for `adopt`."""
        return (
            self.checked,
            self.first_break,
            self.expected_sequence,
            self.previous_hash,
            self.previous_id,
            self.previous_timestamp,
        )

    def adopt(self, parts: Iterable[tuple]) -> bool:
        """Go on as if this walk had walked the parts itself, one after the other, each from
        `start_after` the end of the part before it; True at the first break.

        A part that starts after an intact one stands exactly where this walk would stand, so
        the sum is the sequential walk: the same first break, after the same number of events.
        """
        for checked, first_break, expected, previous, previous_id, timestamp in parts:
            self.checked += checked
            self.expected_sequence, self.previous_hash = expected, previous
            self.previous_id, self.previous_timestamp = previous_id, timestamp
            if first_break is not None:
                self.first_break = first_break
                return True
        return False

    def broken(self, sequence: int, event_id: int | None, problem: str, detail: str) -> bool:
        self.first_break = ChainBreak(self.chain, sequence, event_id, problem, detail)
        return True

    def through(self, last_sequence: int, chunk_size: int) -> bool:
        """Check each event from where the walk is to `last_sequence`; True at the first break."""
        page = _PAGE_SQL[connection.vendor]
        hash_of, timestamp_of = self.hasher.hash, self.timestamp_of
        checked, expected, previous = self.checked, self.expected_sequence, self.previous_hash
        last_id, last_timestamp = self.previous_id, self.previous_timestamp
        after = expected - 1
        with connection.cursor() as cursor:
            while after < last_sequence:
                cursor.execute(page, [self.chain, after, last_sequence, chunk_size])
                rows = cursor.fetchall()
                if not rows:
                    break
                for row in rows:
                    checked += 1
                    timestamp = row[_TIMESTAMP] if timestamp_of is None else timestamp_of(row[4])
                    if (
                        row[_SEQUENCE] != expected
                        or row[_PREV_HASH] != previous
                        or hash_of(row, timestamp) != row[_HASH]
                    ):
                        self.checked, self.expected_sequence, self.previous_hash = (
                            checked,
                            expected,
                            previous,
                        )
                        self.previous_id, self.previous_timestamp = last_id, last_timestamp
                        # Which of the three it is, in the order an auditor would check them.
                        if self.link_is_broken(row, timestamp):
                            return True
                    expected, previous = row[_SEQUENCE] + 1, row[_HASH]
                    last_id, last_timestamp = row[_ID], timestamp
                after = rows[-1][_SEQUENCE]
        self.checked, self.expected_sequence, self.previous_hash = checked, expected, previous
        self.previous_id, self.previous_timestamp = last_id, last_timestamp
        return False

    def link_is_broken(self, row: tuple, timestamp: str) -> bool:
        event_id, sequence, stored_hash, prev_hash = row[_ID], row[_SEQUENCE], row[2], row[3]
        if sequence != self.expected_sequence:
            missing = (
                f"sequence {self.expected_sequence}"
                if sequence == self.expected_sequence + 1
                else f"sequences {self.expected_sequence} to {sequence - 1}"
            )
            return self.broken(
                sequence, event_id, "missing event", f"The chain has no event at {missing}."
            )
        recomputed = self.hasher.hash(row, timestamp)
        if recomputed != stored_hash:
            return self.broken(
                sequence,
                event_id,
                "altered content",
                f"Its stored hash {stored_hash} is not the hash of its content ({recomputed}).",
            )
        if prev_hash != self.previous_hash:
            before = (
                f"the hash of event {self.previous_id} before it"
                if self.previous_id is not None
                else "the start of a chain (64 zeros)"
            )
            return self.broken(
                sequence,
                event_id,
                "broken link",
                f"Its prev_hash {prev_hash} is not {before} ({self.previous_hash}): "
                "one of the two was replaced.",
            )
        return False

    def head_is_broken(self, head: AuditChainHead) -> bool:
        """The head must name the last event walked: its sequence, hash and time."""
        if head.last_sequence >= self.expected_sequence:
            missing = (
                f"sequence {self.expected_sequence}"
                if head.last_sequence == self.expected_sequence
                else f"sequences {self.expected_sequence} to {head.last_sequence}"
            )
            return self.broken(
                self.expected_sequence,
                None,
                "missing event",
                f"The chain's head is at sequence {head.last_sequence}, "
                f"but the events at {missing} are gone.",
            )
        if head.last_hash != self.previous_hash:
            return self.broken(
                head.last_sequence,
                self.previous_id,
                "broken link",
                f"The chain's head records hash {head.last_hash} for its last event, "
                f"which has hash {self.previous_hash}.",
            )
        recorded = (
            canonical_timestamp(head.last_timestamp) if head.last_timestamp is not None else None
        )
        if recorded is not None and recorded != self.previous_timestamp:
            walked = self.previous_timestamp
            return self.broken(
                head.last_sequence,
                self.previous_id,
                "altered head",
                f"The chain's head records the time {recorded} for its last event, which has "
                f"the time {walked if walked is not None else 'of no event'}.",
            )
        return False

    def beyond_is_planted(self, head: AuditChainHead) -> tuple[bool, AuditChainHead | None]:
        """Whether an event lies beyond the head that no append put there. An event beyond
        the head walked, but covered by the head read again now, was appended meanwhile: the
        walk goes on to that newer head (returned)."""
        beyond = (
            AuditEvent.objects.filter(chain=self.chain, sequence__gt=head.last_sequence)
            .order_by("sequence")
            .values("id", "sequence", "hash", "prev_hash")
            .first()
        )
        if beyond is None:
            return False, None
        # Read after the event: an append commits its events and its head at once.
        newer = AuditChainHead.objects.filter(chain=self.chain).first()
        if newer is not None and newer.last_sequence >= beyond["sequence"]:
            return False, newer
        self.broken(
            beyond["sequence"],
            beyond["id"],
            "event beyond the head",
            f"The chain's head is at sequence {head.last_sequence} (hash {head.last_hash}), "
            f"but this event (hash {beyond['hash']}, prev_hash {beyond['prev_hash']}) lies "
            "beyond it: it was written behind the portal's back, and new events of this chain "
            "are refused until it is dealt with.",
        )
        return True, None


def verify_chain(
    chain: str,
    *,
    chunk_size: int = 5000,
    rounds: int = 100,
    head: AuditChainHead | None = None,
    parts: Iterable[tuple] | None = None,
) -> ChainReport:
    """Walk one chain in sequence order (pages of `chunk_size` events) and check each link, then
    the chain's head: it must name the last event, and no event may lie beyond it.

    The head is read first and the walk goes up to it. Events appended while the walk runs move
    the head: the walk follows them, for at most `rounds` heads, and leaves the rest for next time.

    `parts`, if given, are the `_Walk.state()` of walks over consecutive parts of the chain up
    to `head` (read before them), checked elsewhere (by other processes): the walk adopts them
    instead of walking that far itself.
    """
    walk = _Walk(chain)
    if head is None:
        parts = None
        head = AuditChainHead.objects.filter(chain=chain).first()
    if head is None:
        first = (
            AuditEvent.objects.filter(chain=chain).order_by("sequence").values("id", "sequence")
        ).first()
        if first is not None:
            walk.broken(
                first["sequence"],
                first["id"],
                "no head",
                "The chain has events but no head (approvals_auditchainhead): it was deleted.",
            )
        return walk.report()
    for number in range(rounds):
        if number == 0 and parts is not None:
            broken = walk.adopt(parts)
        else:
            broken = walk.through(head.last_sequence, chunk_size)
        if broken or walk.head_is_broken(head):
            break
        planted, newer = walk.beyond_is_planted(head)
        if planted or newer is None:
            break
        head = newer
    return walk.report()

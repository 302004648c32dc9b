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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone

from responseportal.http import normalized_ip
from responseportal.models import Organization

from .context import SYSTEM, AuditContext
from .models import GENESIS_HASH, AuditChainHead, AuditEvent

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
    "request.approved",
    "request.rejected",
    "request.expired",
    "request.cancelled",
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
    "audit.exported",
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


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


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


def _without_nul(text: str, length: int) -> str:
    # PostgreSQL text cannot hold NUL characters.
    return text.replace("\x00", "")[:length]


def lock_head(chain: str) -> AuditChainHead:
    """The chain's head, locked until the end of the transaction (created if new)."""
    head = AuditChainHead.objects.select_for_update().filter(chain=chain).first()
    if head is not None:
        return head
    try:
        with transaction.atomic():
            return AuditChainHead.objects.create(chain=chain)
    except IntegrityError:
        # Another writer created the head first: wait for it like any other append.
        return AuditChainHead.objects.select_for_update().get(chain=chain)


def link(head: AuditChainHead, event: AuditEvent) -> AuditEvent:
    """Make the unsaved `event` the next link after `head`, and move the (locked) head to it.

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


@transaction.atomic
def append(organization: Organization | None, events: Iterable[AuditEvent]) -> list[AuditEvent]:
    """Append unsaved events, in order, to the organization's chain (the platform chain without
    one), in one insert. The one way events are written: by `record`, `seed_audit_events` and
    the benchmark alike.

    Their fields must already read back as stored (see `record`); the chain's head stays
    locked until the transaction ends. Events for several organizations in one transaction
    should be appended in the order of the organizations' ids, so that two such transactions
    cannot deadlock.
    """
    head = lock_head(chain_of(organization))
    linked = [link(head, event) for event in events]
    AuditEvent.objects.bulk_create(linked)
    head.save(update_fields=["last_sequence", "last_hash", "last_timestamp"])
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
    problem: str  # "altered content", "missing event" or "broken link"
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


def verify_chain(chain: str, *, chunk_size: int = 5000) -> ChainReport:
    """Walk one chain in sequence order (a server-side cursor on PostgreSQL) and check each link.

    The head is read first, so events appended while the walk runs are left for next time.
    """
    head = AuditChainHead.objects.filter(chain=chain).first()
    events = AuditEvent.objects.filter(chain=chain)
    if head is not None:
        events = events.filter(sequence__lte=head.last_sequence)
    rows = events.order_by("sequence").values("id", "hash", *HASHED_FIELDS)
    expected_sequence, previous_hash, previous_id = 1, GENESIS_HASH, None
    checked = 0

    def broken(row, problem, detail):
        return ChainReport(
            chain, checked, ChainBreak(chain, row["sequence"], row["id"], problem, detail)
        )

    for row in rows.iterator(chunk_size=chunk_size):
        checked += 1
        if row["sequence"] != expected_sequence:
            missing = (
                f"sequence {expected_sequence}"
                if row["sequence"] == expected_sequence + 1
                else f"sequences {expected_sequence} to {row['sequence'] - 1}"
            )
            return broken(row, "missing event", f"The chain has no event at {missing}.")
        recomputed = hash_values(row)
        if recomputed != row["hash"]:
            return broken(
                row,
                "altered content",
                f"Its stored hash {row['hash']} is not the hash of its content ({recomputed}).",
            )
        if row["prev_hash"] != previous_hash:
            before = (
                f"the hash of event {previous_id} before it"
                if previous_id is not None
                else "the start of a chain (64 zeros)"
            )
            return broken(
                row,
                "broken link",
                f"Its prev_hash {row['prev_hash']} is not {before} ({previous_hash}): "
                "one of the two was replaced.",
            )
        expected_sequence, previous_hash, previous_id = row["sequence"] + 1, row["hash"], row["id"]

    if head is not None and head.last_sequence >= expected_sequence:
        missing = (
            f"sequence {expected_sequence}"
            if head.last_sequence == expected_sequence
            else f"sequences {expected_sequence} to {head.last_sequence}"
        )
        detail = (
            f"The chain's head is at sequence {head.last_sequence}, "
            f"but the events at {missing} are gone."
        )
        return ChainReport(
            chain, checked, ChainBreak(chain, expected_sequence, None, "missing event", detail)
        )
    if head is not None and head.last_hash != previous_hash:
        detail = (
            f"The chain's head records hash {head.last_hash} for its last event, "
            f"which has hash {previous_hash}."
        )
        return ChainReport(
            chain,
            checked,
            ChainBreak(chain, head.last_sequence, previous_id, "broken link", detail),
        )
    return ChainReport(chain, checked, None)

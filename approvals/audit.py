"""Writing audit events. Every state change calls `record` inside its own transaction.

Events form a hash chain per organization: each stores the hash of the one before it in its
chain and its own SHA-256 over a canonical serialization of its fields. Appends to one chain
are serialized by locking that chain's head row; different chains do not wait on each other.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC

from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.ipv6 import clean_ipv6_address

from responseportal.models import Organization

from .models import ActionRequest, AuditChainHead, AuditEvent, Source

PLATFORM_CHAIN = "platform"
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


@dataclass(frozen=True)
class AuditContext:
    """Where an action came from: the web, an e-mail link, or the system itself."""

    source: str = Source.SYSTEM
    ip_address: str | None = None
    user_agent: str = ""

    @classmethod
    def from_request(cls, request: HttpRequest, source: str = Source.WEB) -> "AuditContext":
        return cls(
            source=source,
            ip_address=request.META.get("REMOTE_ADDR") or None,
            user_agent=request.META.get("HTTP_USER_AGENT", "")[:500],
        )


SYSTEM = AuditContext()


def chain_of(organization: Organization | None) -> str:
    return f"org:{organization.pk}" if organization is not None else PLATFORM_CHAIN


def canonical(event: AuditEvent) -> bytes:
    """The bytes an event's hash is computed over: sorted keys, UTC time to the microsecond."""
    values = {name: getattr(event, name) for name in HASHED_FIELDS}
    values["timestamp"] = event.timestamp.astimezone(UTC).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ"
    )
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_hash(event: AuditEvent) -> str:
    return hashlib.sha256(canonical(event)).hexdigest()


def _normalized_ip(address: str | None) -> str | None:
    if not address:
        return None
    return clean_ipv6_address(address) if ":" in address else address


def _locked_head(chain: str) -> AuditChainHead:
    head = AuditChainHead.objects.select_for_update().filter(chain=chain).first()
    if head is not None:
        return head
    try:
        with transaction.atomic():
            return AuditChainHead.objects.create(chain=chain)
    except IntegrityError:
        # Another writer created the head first: wait for it like any other append.
        return AuditChainHead.objects.select_for_update().get(chain=chain)


@transaction.atomic
def record(
    organization: Organization | None,
    verb: str,
    *,
    actor=None,
    role: str = "",
    request: ActionRequest | None = None,
    data: dict | None = None,
    context: AuditContext = SYSTEM,
) -> AuditEvent:
    """Append one event to the organization's chain (the platform chain without one)."""
    chain = chain_of(organization)
    head = _locked_head(chain)
    event = AuditEvent(
        organization=organization,
        chain=chain,
        sequence=head.last_sequence + 1,
        timestamp=timezone.now(),
        actor=actor,
        actor_username=actor.get_username() if actor is not None else "",
        role=role,
        verb=verb,
        request=request,
        action_key=request.action.key if request is not None else "",
        # Stored exactly as it will read back, so the hash can be checked later.
        data=json.loads(json.dumps(data or {}, cls=DjangoJSONEncoder)),
        source=context.source,
        ip_address=_normalized_ip(context.ip_address),
        user_agent=context.user_agent[:500],
        prev_hash=head.last_hash,
    )
    event.hash = event_hash(event)
    event.save()
    head.last_sequence = event.sequence
    head.last_hash = event.hash
    head.save(update_fields=["last_sequence", "last_hash"])
    return event

"""What sign-in traffic can append to the audit log: bounded, whoever sends it.

Anyone can try to sign in, so every failed attempt and every lockout passes gates before it
becomes an event. Each gate admits `limit` events of one kind in a window; the next ones are
counted instead, and the count is written once, as one `auth.attempts_counted` event, after the
window has ended (at the next sign-in event of anyone, or the next attempt of the same kind).

- A lockout (one username from one address) is recorded once per lockout window
  (AXES_COOLOFF_TIME); the attempts refused while it lasts are counted.
- Failed sign-ins, and lockouts, in one chain: at most PER_ADDRESS_PER_MINUTE from one address
  (an IPv6 address counts as its /64 network) and OVERALL_PER_MINUTE from all addresses together.
  Unknown usernames all go to the platform chain, so that chain is bounded too.

Counts live in a table (`AuditTally`), so all workers of a deployment share them.
"""

import hashlib
import ipaddress
import json
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from responseportal.http import normalized_ip
from responseportal.models import Organization

from .chain import PLATFORM_CHAIN, AuditLogJammed, canonical_timestamp, record
from .context import AuditContext
from .models import AuditTally, Source

PER_ADDRESS_PER_MINUTE = 10
OVERALL_PER_MINUTE = 60
MINUTE = timedelta(minutes=1)
# Ended windows whose counts one call writes at most, so that no sign-in waits on a backlog.
# Only a window that counted something beyond its limit has a count to write.
FLUSH_BATCH = 20

LOCKED_OUT = "locked out"
PER_ADDRESS = "per address"
OVERALL = "overall"


@dataclass(frozen=True)
class Gate:
    kind: str
    subject: dict
    limit: int
    window: timedelta


def address_group(address: str | None) -> str:
    """The address as the gates count it: an IPv4 address itself, an IPv6 address by its /64."""
    if not address:
        return "unknown"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return "unknown"
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def lockout_window() -> timedelta:
    """How long a lockout lasts (AXES_COOLOFF_TIME; a quarter of an hour if not a duration)."""
    cool_off = settings.AXES_COOLOFF_TIME
    return cool_off if isinstance(cool_off, timedelta) else timedelta(minutes=15)


def lockout_gates(username: str, address: str | None) -> list[Gate]:
    # The pair axes locks: the username and the exact address.
    subject = {"username": username, "address": normalized_ip(address) or "unknown"}
    return [
        Gate(LOCKED_OUT, subject, 1, lockout_window()),
        Gate(OVERALL, {}, OVERALL_PER_MINUTE, MINUTE),
    ]


def failure_gates(address: str | None) -> list[Gate]:
    return [
        Gate(PER_ADDRESS, {"address": address_group(address)}, PER_ADDRESS_PER_MINUTE, MINUTE),
        Gate(OVERALL, {}, OVERALL_PER_MINUTE, MINUTE),
    ]


def _key(chain: str, gate: Gate) -> str:
    text = json.dumps([chain, gate.kind, gate.subject], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _organization(chain: str) -> Organization | None:
    if chain == PLATFORM_CHAIN:
        return None
    return Organization.objects.get(pk=int(chain.removeprefix("org:")))


def _write_count(tally: AuditTally) -> None:
    """The one event that stands for the attempts counted in the tally's (ended) window."""
    subject = tally.subject
    address = subject.get("address", "")
    record(
        _organization(tally.chain),
        "auth.attempts_counted",
        actor_username=subject.get("username", ""),
        data={
            "attempts": tally.counted,
            "reason": tally.kind,
            "limit": tally.limit,
            "from": canonical_timestamp(tally.window_start),
            "until": canonical_timestamp(tally.window_end),
            **subject,
        },
        context=AuditContext(source=Source.WEB, ip_address=address if "/" not in address else None),
    )


def _locked_tally(chain: str, gate: Gate, now) -> AuditTally:
    """The gate's tally in `chain`, locked, with a window open at `now` (its count written first
    if its window has ended)."""
    key = _key(chain, gate)
    tally = AuditTally.objects.select_for_update().filter(key=key).first()
    if tally is None:
        try:
            with transaction.atomic():
                return AuditTally.objects.create(
                    key=key,
                    chain=chain,
                    kind=gate.kind,
                    subject=gate.subject,
                    limit=gate.limit,
                    window_start=now,
                    window_end=now + gate.window,
                )
        except IntegrityError:
            tally = AuditTally.objects.select_for_update().get(key=key)
    if tally.window_end <= now:
        if tally.counted:
            _write_count(tally)
        tally.window_start, tally.window_end = now, now + gate.window
        tally.limit, tally.admitted, tally.counted = gate.limit, 0, 0
    return tally


def admit(chain: str, gates: list[Gate]) -> bool:
    """Whether one more event may be appended to `chain`: True if every gate has room (each then
    counts it as admitted), False if one is full (that one counts it instead). Call it inside the
    transaction that appends the event."""
    now = timezone.now()
    tallies = [_locked_tally(chain, gate, now) for gate in gates]
    full = next((tally for tally in tallies if tally.admitted >= tally.limit), None)
    if full is not None:
        full.counted += 1
    else:
        for tally in tallies:
            tally.admitted += 1
    for tally in tallies:
        tally.save()
    return full is None


def write_ended_counts(batch: int = FLUSH_BATCH) -> int:
    """Write the count of each ended window (oldest first, at most `batch`) and forget it.
    Each in a transaction of its own; a tally another worker holds is left to it."""
    now = timezone.now()
    written = 0
    # Nothing to write for these; a tally reopened meanwhile no longer matches.
    AuditTally.objects.filter(window_end__lte=now, counted=0).delete()
    keys = list(
        AuditTally.objects.filter(window_end__lte=now)
        .order_by("window_end")
        .values_list("key", flat=True)[:batch]
    )
    for key in keys:
        with transaction.atomic():
            tally = (
                AuditTally.objects.select_for_update(skip_locked=True)
                .filter(key=key, window_end__lte=now)
                .first()
            )
            if tally is None:
                continue
            if tally.counted:
                try:
                    _write_count(tally)
                except AuditLogJammed:
                    continue  # alerted; the count waits until the chain is dealt with
                written += 1
            tally.delete()
    return written

"""Whether an endpoint is inside an organization's automatic-approval scope, failing closed.

Targets and scope lists name machines by host name, IP address or agent GUID, and nothing at
decision time says which names belong to one machine. So the rule compares like with like, in
canonical form, and where it cannot tell, the target waits for an admin:

- "Selected endpoints only": a target is inside only when its canonical form is on the list.
- "All endpoints" with exceptions: a target is outside the exceptions only when the list names
  machines the way the target is named (host names, IPv4 addresses, IPv6 addresses or agent
  GUIDs: a GUID against a list without GUIDs waits) and no entry can be the same machine: the
  same canonical form, or a host name that a search domain completes into the other (`web-01`
  and `web-01.acme.test`).

Pure functions of their arguments, so that `decide()` stays one.
"""

import functools
import ipaddress
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from django.core.exceptions import ValidationError

from actions.validators import validate_endpoint
from responseportal.addresses import ends_in_a_number, inet_aton

HOSTNAME = "host name"
IPV4 = "IPv4 address"
IPV6 = "IPv6 address"
GUID = "agent GUID"
UNREADABLE = "unreadable"

# IPv6 addresses that carry an IPv4 address in a place that depends on the network: 6to4,
# Teredo and NAT64's local-use prefix. The IPv4 host they stand for cannot be told.
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")


@dataclass(frozen=True)
class Identity:
    """One way to read an endpoint: its kind and canonical form."""

    kind: str
    value: str


@functools.lru_cache(maxsize=65_536)
def readings(endpoint: str) -> tuple[Identity, ...]:
    """What `endpoint` may name, canonical; the first reading is the one it is written as.

    A host name of 32 hex digits may also be an agent GUID written without hyphens. A name
    that resolvers read as an address (an entry saved before such names were refused) is that
    address. Anything else unreadable is kept, lower case, as `UNREADABLE`.
    """
    text = endpoint.strip()
    try:
        canonical = validate_endpoint(text)
    except ValidationError:
        address = inet_aton(text.lower()) if text.isascii() and ends_in_a_number(text) else None
        if address is not None:
            return (Identity(IPV4, str(address)),)
        return (Identity(UNREADABLE, text.lower()),)
    # The canonical forms tell the kinds apart: no host name has a colon or ends in a number.
    if ":" in canonical:
        return (Identity(IPV6, canonical),)
    if ends_in_a_number(canonical):
        return (Identity(IPV4, canonical),)
    try:
        guid = str(uuid.UUID(canonical))
    except ValueError:
        return (Identity(HOSTNAME, canonical),)
    if guid == canonical:
        return (Identity(GUID, canonical),)
    return (Identity(HOSTNAME, canonical), Identity(GUID, guid))


def _may_embed_ipv4(value: str) -> bool:
    address = ipaddress.IPv6Address(value)
    return address.sixtofour is not None or address.teredo is not None or address in _LOCAL_NAT64


def _leading_names(name: str) -> Iterable[str]:
    """`web-01`, `web-01.acme`, `web-01.acme.test` for `web-01.acme.test`."""
    labels = name.split(".")
    return (".".join(labels[:length]) for length in range(1, len(labels) + 1))


@dataclass(frozen=True)
class _Index:
    canonical: frozenset[str]  # each entry as written, canonical
    identities: frozenset[Identity]  # every reading of every entry
    kinds: frozenset[str]  # how the entries are written
    names: frozenset[str]  # the host names listed
    leading_names: frozenset[str]  # every leading part of every listed host name


@functools.lru_cache(maxsize=64)
def _index(entries: tuple[str, ...]) -> _Index:
    all_readings = [readings(entry) for entry in entries]
    identities = frozenset(identity for found in all_readings for identity in found)
    names = frozenset(identity.value for identity in identities if identity.kind == HOSTNAME)
    return _Index(
        canonical=frozenset(found[0].value for found in all_readings),
        identities=identities,
        kinds=frozenset(found[0].kind for found in all_readings) - {UNREADABLE},
        names=names,
        leading_names=frozenset(part for name in names for part in _leading_names(name)),
    )


def _may_be_listed(identity: Identity, index: _Index) -> bool:
    """Whether the machine `identity` names may be one the list names."""
    if identity.kind not in index.kinds or identity in index.identities:
        return True
    if identity.kind == HOSTNAME:
        # `web-01` may be completed into `web-01.acme.test`, and the other way round.
        return identity.value in index.leading_names or any(
            name in index.names for name in _leading_names(identity.value)
        )
    if identity.kind == IPV6 and _may_embed_ipv4(identity.value):
        return IPV4 in index.kinds
    return False


def outside_exceptions(endpoint: str, exceptions: Iterable[str]) -> bool:
    """Whether `endpoint` is shown not to be any of the `exceptions` (True with none)."""
    entries = tuple(exceptions)
    if not entries:
        return True
    index = _index(entries)
    return not any(_may_be_listed(identity, index) for identity in readings(endpoint))


def inside_selected(endpoint: str, selected: Iterable[str]) -> bool:
    """Whether `endpoint`, in canonical form, is one of the `selected` endpoints."""
    first = readings(endpoint)[0]
    return first.kind != UNREADABLE and first.value in _index(tuple(selected)).canonical

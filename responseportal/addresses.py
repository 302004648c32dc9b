"""IP addresses in every spelling a network stack accepts, reduced to one.

One machine has many spellings: `::ffff:10.0.0.5`, `::ffff:a00:5` and `64:ff9b::10.0.0.5` reach
10.0.0.5, and resolvers read the host names `0x0a000005`, `167772165`, `10.5` and `012.0.0.5`
as addresses too (inet_aton's rules, which getaddrinfo and browsers follow). Whatever compares
addresses (the approval scope) or decides whether one may be called (outbound webhooks) first
reduces them here.
"""

import ipaddress
import re

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_COMPATIBLE = ipaddress.IPv6Network("::/96")  # ::a.b.c.d, deprecated by RFC 4291
_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # ::ffff:0:a.b.c.d, RFC 2765
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # the well-known prefix, RFC 6052
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*", re.ASCII | re.IGNORECASE)
_PART = re.compile(r"0x([0-9a-f]*)|0([0-7]*)|([1-9][0-9]*)", re.ASCII | re.IGNORECASE)


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, or None.

    IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d; `::` and `::1` stay what they
    are), IPv4-translated (::ffff:0:a.b.c.d) and NAT64's well-known prefix (64:ff9b::a.b.c.d)
    all reach the IPv4 host itself.
    """
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if (
        (address in _COMPATIBLE and int(address) > 1)
        or address in _TRANSLATED
        or (address in _NAT64)
    ):
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return None


def parse_ip(text: str) -> IPAddress | None:
    """The address `text` spells in standard notation, reduced to IPv4 where it embeds one.

    None if `text` is not an address. A zone (`fe80::1%eth0`) is kept: callers refuse it.
    """
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is None:
        return embedded_ipv4(address) or address
    return address


def ends_in_a_number(name: str) -> bool:
    """Whether resolvers read `name` as an IPv4 address rather than look it up.

    The WHATWG URL standard's rule, which matches inet_aton: a name whose last label (after
    one trailing dot) is decimal digits or `0x` and hex digits is an address, valid or not.
    """
    labels = name.split(".")
    if len(labels) > 1 and labels[-1] == "":
        labels.pop()
    return bool(_NUMERIC_LABEL.fullmatch(labels[-1]))


def inet_aton(name: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address inet_aton reads in `name` (`0x0a000005`, `10.5`, `012.0.0.5`), or None.

    One to four parts, each decimal, octal (leading 0) or hex (0x); the last part fills the
    bytes the others leave.
    """
    if len(name) > 253:  # longer is no host name, and int() refuses thousands of digits
        return None
    if name.endswith("."):
        name = name[:-1]
    parts = name.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers = []
    for part in parts:
        match = _PART.fullmatch(part)
        if match is None:
            return None
        hex_digits, octal_digits, decimal = match.groups()
        if hex_digits is not None:
            numbers.append(int(hex_digits or "0", 16))
        elif octal_digits is not None:
            numbers.append(int(octal_digits or "0", 8))
        else:
            numbers.append(int(decimal))
    *leading, last = numbers
    if any(number > 255 for number in leading) or last >= 256 ** (4 - len(leading)):
        return None
    value = last
    for position, number in enumerate(leading):
        value += number << (8 * (3 - position))
    return ipaddress.IPv4Address(value)


def is_public(address: IPAddress) -> bool:
    """Whether `address` is a unicast address on the public internet, in any spelling.

    Python's `is_global` alone lets multicast, `::a.b.c.d`, 64:ff9b::/96 and the rest of ::/8
    through; this asks of the IPv4 address an IPv6 one embeds, and of IPv6 that it is global
    unicast (2000::/3), with a 6to4 address judged by its IPv4 router too.
    """
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            return False
        embedded = embedded_ipv4(address)
        if embedded is not None:
            return is_public(embedded)
        if address.sixtofour is not None and not is_public(address.sixtofour):
            return False
        return address in _GLOBAL_UNICAST and address.is_global and address.teredo is None
    return address.is_global and not (
        address.is_multicast
        or address.is_reserved
        or address.is_loopback
        or address.is_link_local
        or address.is_unspecified
        or address.is_private
    )

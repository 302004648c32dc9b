"""The automatic-approval scope means what the admin meant (issue 17): one identity per machine
whatever its spelling, and a target that cannot be shown to be in scope waits for an admin."""

import ipaddress
import random
from types import SimpleNamespace

import pytest
from django.core.exceptions import ValidationError
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from actions.validators import validate_endpoint
from approvals.decision import decide
from approvals.models import ActionRequest, ApprovalMode, ApprovalSettings, RequestStatus, ScopeMode
from approvals.scope import inside_selected, outside_exceptions

from .approvals_helpers import turn_on_auto_approval
from .conftest import client_for
from .test_approval_settings import csv_file, form_data, url
from .test_new_request import post

SCAN = SimpleNamespace(key="scan_for_malware", category="critical", needs_auto_approval=False)
AUTO, MANUAL = ApprovalMode.AUTO, ApprovalMode.MANUAL
GUID = "6f9619ff-8b86-d011-b42d-00c04fc964ff"
OTHER_GUID = "0b7b3f0e-2f6a-4c55-9d6e-1d2f3a4b5c6d"
PROPERTIES = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def with_exceptions(*entries: str) -> ApprovalSettings:
    return ApprovalSettings(
        auto_approval_enabled=True,
        auto_approved_actions=[SCAN.key],
        scope_mode=ScopeMode.ALL,
        scope_exceptions=list(entries),
    )


def with_selected(*entries: str) -> ApprovalSettings:
    return ApprovalSettings(
        auto_approval_enabled=True,
        auto_approved_actions=[SCAN.key],
        scope_mode=ScopeMode.SELECTED,
        scope_selected=list(entries),
    )


def mode(settings: ApprovalSettings, endpoint: str) -> ApprovalMode:
    return decide(SCAN, settings, [endpoint]).mode


# Spellings, written out by hand from the standards rather than by the code under test.


def ipv4_spellings(address: ipaddress.IPv4Address) -> list[str]:
    """Every way of writing `address` that reaches it: RFC 4291, RFC 6052 and inet_aton."""
    a, b, c, d = address.packed
    value = int(address)
    high, low = value >> 16, value & 0xFFFF
    spellings = [
        str(address),
        f"::ffff:{address}",
        f"::FFFF:{address}",
        f"::ffff:{high:x}:{low:x}",
        f"0:0:0:0:0:ffff:{high:04x}:{low:04x}",
        f"0000:0000:0000:0000:0000:FFFF:{high:04X}:{low:04X}",
        f"::ffff:0:{address}",
        f"64:ff9b::{address}",
        f"64:ff9b::{high:x}:{low:x}",
        f"0064:ff9b:0000:0000:0000:0000:{high:04x}:{low:04x}",
        # Resolvers' readings of a number as a host name (inet_aton): one to four parts.
        str(value),
        f"0x{value:08x}",
        f"0X{value:X}",
        f"0{value:o}" if value else "0",
        f"{a}.{(b << 16) | (c << 8) | d}",
        f"{a}.{b}.{(c << 8) | d}",
        f"0x{a:x}.0x{b:x}.0x{c:x}.0x{d:x}",
        f"0{a:o}.0{b:o}.0{c:o}.0{d:o}",
        f"{a}.{b}.{c}.0x{d:02x}",
        f"{address}.",
    ]
    if value > 1:  # `::` and `::1` are IPv6's own unspecified and loopback addresses
        spellings.append(f"::{address}")
    return spellings


def ipv6_spellings(address: ipaddress.IPv6Address) -> list[str]:
    return [str(address), address.exploded, address.exploded.upper(), str(address).upper()]


def name_spellings(name: str, rng: random.Random) -> list[str]:
    mixed = "".join(c.upper() if rng.random() < 0.5 else c for c in name)
    return [name, name.upper(), mixed, f"{name}.", f"{mixed}.", f"  {name}  "]


def guid_spellings(guid: str) -> list[str]:
    return [guid, guid.upper(), f"{{{guid}}}", f"{{{guid.upper()}}}"]


# An IPv4 address that no IPv6 spelling embeds in a way the rule cannot read.
ipv4 = st.ip_addresses(v=4)
ipv6 = st.ip_addresses(v=6).filter(
    lambda a: (
        a.ipv4_mapped is None
        and a.sixtofour is None
        and a.teredo is None
        and a not in ipaddress.IPv6Network("::/96")
        and a not in ipaddress.IPv6Network("::ffff:0:0:0/96")
        and a not in ipaddress.IPv6Network("64:ff9b::/96")
        and a not in ipaddress.IPv6Network("64:ff9b:1::/48")
    )
)
# A host name label (RFC 1123) that starts with a letter, so that it is never a number.
label = st.builds(
    lambda first, middle, last: first + middle + last,
    st.sampled_from("abcdefghijklmnopqrstuvwxyz"),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", max_size=10),
    st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789"),
)
fqdn = st.lists(label, min_size=2, max_size=4).map(".".join)


class TestAnySpellingGivesTheSameDecision:
    @PROPERTIES
    @given(
        target=ipv4,
        listed=st.lists(ipv4, min_size=1, max_size=5),
        include=st.booleans(),
        data=st.data(),
    )
    def test_ipv4_against_exceptions(self, target, listed, include, data):
        entries = [*listed, target] if include else listed
        # Each entry written in a spelling of its own: a list saved before canonical forms.
        written = [data.draw(st.sampled_from(ipv4_spellings(entry))) for entry in entries]
        expected = MANUAL if target in entries else AUTO
        settings = with_exceptions(*written)
        for spelling in ipv4_spellings(target):
            assert mode(settings, spelling) == expected, spelling

    @PROPERTIES
    @given(address=ipv4)
    def test_the_request_form_files_every_ipv6_spelling_as_the_address_and_refuses_numbers(
        self, address
    ):
        for spelling in ipv4_spellings(address):
            if ":" in spelling or spelling == str(address):
                assert validate_endpoint(spelling) == str(address), spelling
            else:  # a number where a name belongs: refused, naming the address it stands for
                with pytest.raises(ValidationError, match=f" as the IP address {address}:"):
                    validate_endpoint(spelling)

    @PROPERTIES
    @given(target=ipv4, listed=st.lists(ipv4, min_size=1, max_size=5), include=st.booleans())
    def test_ipv4_against_selected_endpoints(self, target, listed, include):
        entries = [*listed, target] if include else listed
        expected = AUTO if target in entries else MANUAL
        settings = with_selected(*map(str, entries))
        for spelling in ipv4_spellings(target):
            assert mode(settings, spelling) == expected, spelling

    @PROPERTIES
    @given(target=ipv6, listed=st.lists(ipv6, min_size=1, max_size=5), include=st.booleans())
    def test_ipv6(self, target, listed, include):
        entries = [*listed, target] if include else listed
        excepted = with_exceptions(*(a.exploded for a in entries))
        selected = with_selected(*(a.exploded.upper() for a in entries))
        listed_here = target in entries
        for spelling in ipv6_spellings(target):
            assert mode(excepted, spelling) == (MANUAL if listed_here else AUTO), spelling
            assert mode(selected, spelling) == (AUTO if listed_here else MANUAL), spelling

    @PROPERTIES
    @given(target=fqdn, listed=st.lists(fqdn, min_size=1, max_size=5), seed=st.integers())
    def test_host_names_against_exceptions(self, target, listed, seed):
        rng = random.Random(seed)
        # A search domain completes a short name into a full one, so either may be the other.
        may_be_listed = any(
            entry == target or entry.startswith(target + ".") or target.startswith(entry + ".")
            for entry in listed
        )
        settings = with_exceptions(*(rng.choice(name_spellings(e, rng)) for e in listed))
        short = target.split(".")[0]
        short_may_be_listed = any(entry.split(".")[0] == short for entry in listed)
        for spelling in name_spellings(target, rng):
            assert mode(settings, spelling) == (MANUAL if may_be_listed else AUTO), spelling
        for spelling in name_spellings(short, rng):
            assert mode(settings, spelling) == (MANUAL if short_may_be_listed else AUTO)

    @PROPERTIES
    @given(target=fqdn, listed=st.lists(fqdn, min_size=1, max_size=5), seed=st.integers())
    def test_host_names_against_selected_endpoints(self, target, listed, seed):
        rng = random.Random(seed)
        settings = with_selected(*listed)
        for spelling in name_spellings(target, rng):
            assert mode(settings, spelling) == (AUTO if target in listed else MANUAL), spelling
        # A short name is not shown to be the listed machine: it may be completed elsewhere.
        assume(target not in listed)
        short = target.split(".")[0]
        assume(short not in listed)
        assert mode(with_selected(target), short) == MANUAL

    @PROPERTIES
    @given(target=st.uuids(), listed=st.lists(st.uuids(), min_size=1, max_size=5))
    def test_guids(self, target, listed):
        excepted = with_exceptions(*(str(g).upper() for g in listed))
        selected = with_selected(*(f"{{{g}}}" for g in listed))
        expected_excepted = MANUAL if target in listed else AUTO
        for spelling in guid_spellings(str(target)):
            assert mode(excepted, spelling) == expected_excepted, spelling
            assert mode(selected, spelling) == (AUTO if target in listed else MANUAL), spelling

    @PROPERTIES
    @given(
        target=st.one_of(ipv4.map(str), fqdn, st.uuids().map(str)),
        junk=st.sampled_from(["\u200b", "\u202e", "\x00", "\ufeff", "\u00ad", "\n", "%eth0"]),
        position=st.integers(min_value=1, max_value=40),
        listed=st.lists(st.one_of(ipv4.map(str), fqdn), min_size=1, max_size=3),
    )
    def test_a_hostile_twin_never_runs_at_once(self, target, junk, position, listed):
        position = min(position, len(target) - 1)
        twin = target[:position] + junk + target[position:]
        assert mode(with_exceptions(*listed), twin) == MANUAL
        assert mode(with_selected(*listed, target), twin) == MANUAL


# The rule, case by case.


@pytest.mark.parametrize(
    ("exceptions", "endpoint", "expected"),
    [
        # No exceptions: all endpoints means all endpoints, however named.
        ([], "10.0.0.5", AUTO),
        ([], GUID, AUTO),
        ([], "web-01", AUTO),
        # A GUID cannot be compared with a list that names no machine by GUID.
        (["10.0.0.5", "web-01.acme.test"], GUID, MANUAL),
        (["10.0.0.5", "web-01.acme.test", OTHER_GUID], GUID, AUTO),
        (["10.0.0.5", "web-01.acme.test", GUID.upper()], f"{{{GUID}}}", MANUAL),
        # A GUID written without hyphens may also be a host name: both must be told apart.
        ([GUID, "web-01.acme.test"], GUID.replace("-", ""), MANUAL),
        ([OTHER_GUID, "web-01.acme.test"], GUID.replace("-", ""), AUTO),
        ([OTHER_GUID], GUID.replace("-", ""), MANUAL),
        # Nor an address with a list of names, a name with a list of addresses, or IPv6 with IPv4.
        (["web-01.acme.test"], "10.0.0.9", MANUAL),
        (["10.0.0.5"], "web-02.acme.test", MANUAL),
        (["10.0.0.5"], "2001:db8::9", MANUAL),
        (["10.0.0.5", "2001:db8::5"], "2001:db8::9", AUTO),
        (["2001:db8::5"], "2001:DB8:0::5", MANUAL),
        # Short names and full names: either may be completed into the other.
        (["web-01.acme.test"], "web-01", MANUAL),
        (["web-01.acme.test"], "web-01.acme", MANUAL),
        (["web-01"], "web-01.acme.test", MANUAL),
        (["web-01.acme"], "web-01.acme.test", MANUAL),
        (["web-01.acme.test"], "web-010", AUTO),
        (["web-01.acme.test"], "acme.test", AUTO),
        (["web-01.acme.test"], "web-02.acme.test", AUTO),
        # IPv6 addresses that carry an IPv4 address where only the network knows: 6to4, Teredo,
        # NAT64's local-use prefix.
        (["10.0.0.5", "2001:db8::5"], "2002:a00:5::1", MANUAL),
        (["10.0.0.5", "2001:db8::5"], "2001:0:4136:e378:8000:63bf:f5ff:fffa", MANUAL),
        (["10.0.0.5", "2001:db8::5"], "64:ff9b:1::a00:5", MANUAL),
        # Lists saved before canonical forms still mean the machine they named.
        (["0x0a000005"], "10.0.0.5", MANUAL),
        (["::ffff:a00:5"], "10.0.0.5", MANUAL),
        (["WEB-01.ACME.TEST."], "web-01.acme.test", MANUAL),
        (["WEB-01.ACME.TEST."], "web-01", MANUAL),
        # What is not an endpoint at all is never shown to be outside the list.
        (["10.0.0.5"], "not an endpoint", MANUAL),
        (["10.0.0.5"], "", MANUAL),
        (["10.0.0.5"], "x" * 100_000, MANUAL),
        (["10.0.0.5"], "fe80::1%eth0", MANUAL),
    ],
)
def test_exceptions(exceptions, endpoint, expected):
    assert mode(with_exceptions(*exceptions), endpoint) == expected
    assert outside_exceptions(endpoint, exceptions) is (expected == AUTO)


@pytest.mark.parametrize(
    ("selected", "endpoint", "expected"),
    [
        (["web-01.acme.test"], "WEB-01.acme.test.", AUTO),
        (["web-01.acme.test"], "web-01", MANUAL),
        (["web-01"], "web-01.acme.test", MANUAL),
        (["10.0.0.5"], "::ffff:10.0.0.5", AUTO),
        (["10.0.0.5"], "64:ff9b::a00:5", AUTO),
        (["10.0.0.5"], "0x0a000005", AUTO),
        (["::ffff:a00:5"], "10.0.0.5", AUTO),
        ([GUID], f"{{{GUID.upper()}}}", AUTO),
        ([GUID], OTHER_GUID, MANUAL),
        (["web-01.acme.test"], "web-01.acme.test\u200b", MANUAL),
        (["web-01.acme.test"], "web-01.acme.test\x00", MANUAL),
        (["not an endpoint"], "not an endpoint", MANUAL),
    ],
)
def test_selected_endpoints(selected, endpoint, expected):
    assert mode(with_selected(*selected), endpoint) == expected
    assert inside_selected(endpoint, selected) is (expected == AUTO)


def test_a_long_list_is_read_once_and_a_decision_stays_fast():
    exceptions = [f"host-{n}.acme.test" for n in range(5_000)] + [
        str(ipaddress.IPv4Address(167772160 + n)) for n in range(5_000)
    ]
    settings = with_exceptions(*exceptions)
    targets = [f"web-{n}.other.test" for n in range(50)] + [f"192.0.2.{n}" for n in range(50)]
    assert decide(SCAN, settings, targets).mode == AUTO
    assert decide(SCAN, settings, [*targets, "host-4999"]).out_of_scope == ("host-4999",)


# Through the pages: the import accepts GUIDs, and the request form files the canonical target.


@pytest.mark.django_db
def test_an_imported_guid_exception_holds_on_the_request_form(acme, admin, operator):
    turn_on_auto_approval(acme, auto_approved_actions=[SCAN.key])
    exceptions = f"endpoint\n10.0.0.5\nWEB-01.acme.test\n{{{GUID.upper()}}}\n"
    response = client_for(admin).post(
        url(), form_data(acme, scope_mode="all", scope_exceptions_csv=csv_file(exceptions))
    )
    assert response.status_code == 302
    assert ApprovalSettings.objects.get(organization=acme).scope_exceptions == [
        "10.0.0.5",
        "web-01.acme.test",
        GUID,
    ]
    client = client_for(operator)
    for endpoint in [GUID.upper(), "::ffff:a00:5", "64:ff9b::10.0.0.5", "web-01"]:
        post(client, SCAN.key, {"endpoints": f"web-02.acme.test\n{endpoint}"})
    post(client, SCAN.key, {"endpoints": "web-02.acme.test\n10.0.0.6\n" + OTHER_GUID})
    requests = list(ActionRequest.objects.order_by("submitted_at", "pk"))
    assert [r.status for r in requests] == [RequestStatus.PENDING] * 4 + [RequestStatus.QUEUED]
    assert [t.value for t in requests[1].targets.order_by("position")] == [
        "web-02.acme.test",
        "10.0.0.5",
    ]


@pytest.mark.django_db
def test_a_numeric_host_name_is_refused_on_the_request_form(acme, operator):
    response = post(client_for(operator), SCAN.key, {"endpoints": "0x0a000005"})
    assert response.status_code == 200
    assert "Resolvers read `0x0a000005` as the IP address 10.0.0.5" in (
        response.content.decode().replace("&#x60;", "`")
    )
    assert not ActionRequest.objects.exists()

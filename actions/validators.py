"""Validators for the parameters of response actions.

Each function takes what the user typed and returns the canonical value, or raises
`ValidationError` with a message that quotes the bad value and says what is expected.
They are pure: no database, and no exception other than `ValidationError` for any string.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import re
import signal
import string
import subprocess
import sys
import unicodedata
import uuid
from collections.abc import Callable, Hashable, Iterable
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TypeVar

import sqlglot
from confusable_homoglyphs import categories as unicode_scripts
from confusable_homoglyphs.confusables import confusables_data
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.core.validators import EmailValidator, URLValidator
from sqlglot import exp

from responseportal.addresses import ends_in_a_number, inet_aton, parse_ip

MAX_TARGETS = 100
# Every uploaded file (YARA rules, scripts, scope CSV) is text under 1 MB.
MAX_UPLOAD_BYTES = 1_048_576
MAX_QUERY_LENGTH = 10_000
MAX_PATH_LENGTH = 4096
MAX_LISTED_ERRORS = 10

T = TypeVar("T", bound=Hashable)

_HOST_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_ALERT_ID = re.compile(r"WB-(\d{1,20})-(\d{8})-(\d{5})", re.ASCII | re.IGNORECASE)
_INCIDENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# CVE numbers have no upper length by spec; the bound keeps hostile input out of storage.
_CVE_ID = re.compile(r"CVE-(\d{4})-(\d{4,19})", re.ASCII | re.IGNORECASE)
_NETBIOS_DOMAIN = re.compile(r"[A-Za-z0-9_-]{1,15}")
_PID = re.compile(r"-?\d+", re.ASCII)
_ACCOUNT_FORBIDDEN = frozenset('"/\\[]:;|=,+*?<>@')
_URL_VALIDATOR = URLValidator(schemes=["http", "https"])
# A customer's mailbox lives on a real domain; Django allows `localhost` by default.
_EMAIL_VALIDATOR = EmailValidator(allowlist=[])

_ENDPOINT_EXPECTED = "a hostname, an IP address or an agent GUID"
_ACCOUNT_EXPECTED = (
    "a user principal name (user@example.com), a down-level logon name (DOMAIN\\user) "
    "or a sAMAccountName (up to 20 characters)"
)
_PATH_EXPECTED = (
    "an absolute path such as C:\\Windows\\notepad.exe, \\\\server\\share\\file.txt "
    "or /usr/bin/python3"
)
_QUERY_EXPECTED = "one read-only SELECT statement"
_QUERY_EXAMPLE = "SELECT name, path FROM processes"
# The osquery tables that make the endpoint act rather than read, with what they do, from
# the table specifications of osquery's schema (specs/*.table in the osquery repository,
# published at osquery.io/schema). Any name in a query is compared in lower case, as SQLite
# compares table names, wherever it stands: FROM, JOIN, a subquery, a CTE, `IN curl`.
ACTING_OSQUERY_TABLES = {
    # "Perform an http request and return stats about it."
    "curl": "sends an HTTP request from the endpoint",
    # "Inspect TLS certificates by connecting to input hostnames."
    "curl_certificate": "connects from the endpoint to the hosts it is given",
    # "If carve=1 then the query is treated as a new carve request": files leave the endpoint.
    "carves": "starts a file carve that uploads files from the endpoint",
    # The name of carves before osquery 3.
    "carving": "starts a file carve that uploads files from the endpoint",
    # Scans the files it is given: Run YARA Rules does that, under that action's own approval.
    "yara": "runs a YARA scan, which is Run YARA Rules' job",
}
_WRITES = (
    exp.DML,
    exp.DDL,
    exp.Drop,
    exp.Alter,
    exp.TruncateTable,
    exp.Command,
    exp.Attach,
    exp.Detach,
    exp.Pragma,
    exp.Transaction,
    exp.Commit,
    exp.Rollback,
    exp.Into,
    exp.Use,
    exp.LoadData,
)


def _escaped(c: str) -> str:
    if not c.isprintable():
        return repr(c)[1:-1]
    if not _is_invisible(c):
        return c
    return f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}"


def shown(value: str, limit: int = 80) -> str:
    """The value as it can be quoted in a message: invisible characters escaped, long values cut."""
    text = "".join(map(_escaped, value[:limit]))
    return text + "…" if len(value) > limit else text


def _invalid(value: str, what: str, expected: str) -> ValidationError:
    return ValidationError(f"`{shown(value)}` is not {what}: expected {expected}.", code="invalid")


def has_control_characters(value: str) -> bool:
    """Whether `value` holds a control character (line breaks, tabs and NUL among them) or a
    lone surrogate: neither belongs in a one-line value, and no database text stores the last."""
    return any(unicodedata.category(c) in ("Cc", "Cs") for c in value)


# Characters a reader cannot see, or that reorder what is around them, so that the approver's
# page would not show what will run (`invoice\u202efdp.exe` shows as `invoiceexe.pdf`):
# formatting characters (Cf: bidirectional overrides and isolates, zero-width spaces and
# joiners, the byte-order mark, the soft hyphen), line and paragraph separators, private-use,
# unassigned and surrogate code points, and control characters other than tab and line breaks.
_INVISIBLE_CATEGORIES = frozenset({"Cf", "Zl", "Zp", "Co", "Cn", "Cs", "Cc"})
_TAB_AND_LINE_BREAKS = frozenset("\t\n\r")
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# The rest of Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt), which
# browsers also draw as nothing: a combining joiner, fillers and variation selectors.
_DEFAULT_IGNORABLE_OUTSIDE_THOSE = (
    (0x034F, 0x034F),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFFA0, 0xFFA0),
    (0xE0100, 0xE01EF),
)
_UNNAMED = {
    "Cc": "(a control character)",
    "Co": "(a private-use character)",
    "Cn": "(an unassigned code point)",
    "Cs": "(a lone surrogate)",
}
# Scripts one name may mix (Unicode TR39, "highly restrictive"): Japanese, Chinese and Korean
# writing use several at once, and each may be mixed with Latin.
_SCRIPT_MIXES = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)
_NO_SCRIPT = frozenset({"COMMON", "INHERITED"})


def _is_invisible(c: str) -> bool:
    if c in _TAB_AND_LINE_BREAKS:
        return False
    if unicodedata.category(c) in _INVISIBLE_CATEGORIES:
        return True
    code = ord(c)
    return any(first <= code <= last for first, last in _DEFAULT_IGNORABLE_OUTSIDE_THOSE)


def code_point(c: str) -> str:
    """One character as a message names it: `U+202E RIGHT-TO-LEFT OVERRIDE`."""
    name = unicodedata.name(c, "") or _UNNAMED.get(unicodedata.category(c), "")
    return f"U+{ord(c):04X} {name}".rstrip()


def invisible_character(value: str) -> int | None:
    """The index of the first character of `value` that a reader cannot see or that reorders
    the text around it (tabs and line breaks excepted), or None."""
    if value.isascii():
        match = _ASCII_CONTROL.search(value)
        return match.start() if match else None
    return next((i for i, c in enumerate(value) if _is_invisible(c)), None)


def refuse_invisible(value: str, *, what: str = "") -> str:
    """`value`, unless it holds a character that a reader cannot see or that reorders the text
    around it (U+202E, U+200B, U+2066–U+2069, U+FEFF, other default-ignorables, controls).

    Every field an approver reads goes through here, so that the page shows what will run.
    The message names the code point; the line and column too in several lines of text, and
    `what` ("The rule file") is named instead of quoting the value.
    """
    index = invisible_character(value)
    if index is None:
        return value
    character = code_point(value[index])
    expected = (
        "expected visible characters only, so that the approver reads what will run "
        "(retype the text rather than paste it)"
    )
    line_start = max(value.rfind("\n", 0, index), value.rfind("\r", 0, index)) + 1
    line_number = len(re.findall(r"\r\n|\r|\n", value[:line_start])) + 1
    if what:
        place = f"on line {line_number}, column {index - line_start + 1}"
        message = f"{what} holds {character} {place}: {expected}."
    else:
        line_end = min(
            (end for end in (value.find("\n", index), value.find("\r", index)) if end != -1),
            default=len(value),
        )
        line = value[line_start:line_end]
        prefix = f"Line {line_number}: " if line_start or line_end < len(value) else ""
        message = f"{prefix}`{shown(line)}` holds {character}: {expected}."
    raise ValidationError(message, code="invisible")


def _ascii_look_alike(value: str) -> str | None:
    """The ASCII text `value` passes for when each of its non-ASCII characters looks like
    ASCII (Unicode TR39's confusables), or None."""
    look = []
    for c in value:
        if c.isascii():
            look.append(c)
            continue
        glyphs = [g["c"] for g in confusables_data.get(c, ()) if g["c"].isascii()]
        if not glyphs or not glyphs[0].isprintable():
            return None
        look.append(glyphs[0])
    return "".join(look)


def refuse_look_alikes(value: str, *, what: str) -> str:
    """`value`, unless it can pass for another name (Unicode TR39): a compatibility variant
    (fullwidth or mathematical letters, ligatures), letters of two scripts (Cyrillic `а` in
    `аdministrator`), or non-ASCII letters that all look like ASCII ones (`асе`).

    `what` names the value in the message: "an account name".
    """
    refuse_invisible(value)
    for c in value:
        plain = unicodedata.normalize("NFKC", c)
        if plain != c:
            raise ValidationError(
                f"`{shown(value)}` holds {code_point(c)}, a variant of `{shown(plain)}`: "
                f"expected {what} in plain characters, such as "
                f"`{shown(unicodedata.normalize('NFKC', value))}`.",
                code="look_alike",
            )
    scripts: dict[str, str] = {}
    for c in value:
        scripts.setdefault(unicode_scripts.alias(c), c)
    for script in _NO_SCRIPT:
        scripts.pop(script, None)
    if len(scripts) > 1 and not any(scripts.keys() <= mix for mix in _SCRIPT_MIXES):
        names = [script.replace("_", " ").title() for script in scripts]
        odd = next(c for script, c in scripts.items() if script != "LATIN")
        raise ValidationError(
            f"`{shown(value)}` mixes {', '.join(names[:-1])} and {names[-1]} letters "
            f"({code_point(odd)}), so it can pass for another name: expected {what} "
            "in the letters of one script.",
            code="look_alike",
        )
    look = _ascii_look_alike(value)
    if look is not None and look != value:
        odd = next(c for c in value if not c.isascii())
        raise ValidationError(
            f"`{shown(value)}` looks like `{look}` but holds {code_point(odd)}: expected "
            f"{what} as it is written in the directory, in plain ASCII if it is `{look}`.",
            code="look_alike",
        )
    return value


def read_text(upload: UploadedFile | bytes, *, what: str, expected: str) -> str:
    """The text of an uploaded file (or of its bytes): every upload is read through here.

    Refused with a message that starts with `what` ("The script") and ends with `expected`
    ("a script saved as UTF-8"): a file of MAX_UPLOAD_BYTES or more (an upload is refused by
    its size, before it is read), bytes that are not UTF-8, and NUL bytes (a binary file, or
    UTF-16, which reads as UTF-8 with a NUL after every character; no database text holds
    them). A UTF-8 byte-order mark is dropped.
    """
    size = len(upload) if isinstance(upload, bytes) else upload.size
    if size >= MAX_UPLOAD_BYTES:
        raise ValidationError(
            f"{what} is {size:,} bytes: expected a file under 1 MB ({MAX_UPLOAD_BYTES:,} bytes).",
            code="max_size",
        )
    data = upload if isinstance(upload, bytes) else upload.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValidationError(
            f"{what} is not UTF-8 text (invalid byte at offset {error.start}): expected "
            f"{expected}.",
            code="encoding",
        ) from None
    if "\x00" in text:
        raise ValidationError(
            f"{what} holds NUL bytes, so it is binary or UTF-16: expected {expected}.",
            code="binary",
        )
    return text


def _numbered_lines(text: str) -> list[tuple[int, str]]:
    """Non-empty stripped lines with their 1-based line numbers, as a browser counts them."""
    lines = re.split(r"\r\n|\r|\n", text)
    return [(number, line.strip()) for number, line in enumerate(lines, start=1) if line.strip()]


def _numbered_items(text: str) -> list[tuple[int, str]]:
    """Like `_numbered_lines`, but a line may also hold several comma-separated items."""
    return [
        (number, item.strip())
        for number, line in _numbered_lines(text)
        for item in line.split(",")
        if item.strip()
    ]


def _validate_list(
    items: Iterable[tuple[int, str]],
    validate: Callable[[str], T],
    *,
    plural: str,
    empty_message: str,
) -> list[T]:
    """Canonical values of numbered items, deduplicated; every bad item is named by its line."""
    values: dict[T, None] = {}
    errors: list[str] = []
    seen_any = False
    for number, item in items:
        seen_any = True
        try:
            values.setdefault(validate(item))
        except ValidationError as error:
            errors.extend(f"Line {number}: {message}" for message in error.messages)
    if not seen_any:
        raise ValidationError(empty_message, code="required")
    if len(errors) > MAX_LISTED_ERRORS:
        hidden = len(errors) - MAX_LISTED_ERRORS
        errors = [*errors[:MAX_LISTED_ERRORS], f"… and {hidden} more lines with errors."]
    if len(values) > MAX_TARGETS:
        errors.append(
            f"You entered {len(values)} {plural}: expected at most {MAX_TARGETS} per request."
        )
    if errors:
        raise ValidationError(errors, code="invalid")
    return list(values)


def _hostname(value: str) -> str | None:
    """The lower-case RFC 1123 host name without its trailing dot, or None."""
    if not value.isascii():
        return None
    name = value.lower().removesuffix(".")
    if not name or len(name) > 253:
        return None
    labels = name.split(".")
    if not all(_HOST_LABEL.fullmatch(label) for label in labels):
        return None
    # Resolvers read a name ending in a number (`10.5`, `0x0a000005`) as an IP address.
    if ends_in_a_number(name):
        return None
    return name


def _ip_address(value: str) -> str | None:
    """The canonical IPv4 or IPv6 address, or None."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    # A zone (`fe80::1%eth0`) means something only on the machine where it was typed.
    if getattr(address, "scope_id", None):
        return None
    return str(address)


def _guid(value: str) -> str | None:
    """The canonical lower-case hyphenated GUID, with or without braces, or None."""
    inner = value[1:-1] if value.startswith("{") and value.endswith("}") else value
    if len(inner) != 36:
        return None
    try:
        canonical = str(uuid.UUID(inner))
    except ValueError:
        return None
    # uuid.UUID tolerates hyphens anywhere and non-ASCII digits; the round trip does not.
    return canonical if canonical == inner.lower() else None


def _endpoint_address(value: str) -> str | None:
    """The endpoint's IP address, as IPv4 when an IPv6 spelling embeds one, or None."""
    address = parse_ip(value)
    if address is None or getattr(address, "scope_id", None):
        return None
    return str(address)


def validate_endpoint(value: str) -> str:
    """A hostname, an IP address or an agent GUID, in the one form scope lists compare.

    `::ffff:10.0.0.5`, `::10.0.0.5` and `64:ff9b::10.0.0.5` are 10.0.0.5; names are lower
    case without a trailing dot; a name that resolvers read as an address is refused.
    """
    value = value.strip()
    canonical = _endpoint_address(value) or _guid(value) or _hostname(value)
    if canonical is None:
        error = _invalid(value, "an endpoint", _ENDPOINT_EXPECTED)
        if value.isascii() and ends_in_a_number(value):
            read_as = inet_aton(value.lower())
            reading = (
                f"Resolvers read `{shown(value)}` as the IP address {read_as}: enter {read_as} "
                "if you mean it."
                if read_as
                else "Resolvers do not look up a name ending in a number: they read it as an "
                "IP address."
            )
            error = ValidationError(f"{error.message} {reading}", code="invalid")
        raise error
    return canonical


def validate_endpoints(text: str, *, exactly_one: bool = False) -> list[str]:
    """Endpoints, one per line, canonical and deduplicated."""
    endpoints = _validate_list(
        _numbered_lines(text),
        validate_endpoint,
        plural="endpoints",
        empty_message="Enter at least one endpoint, one per line.",
    )
    if exactly_one and len(endpoints) > 1:
        raise ValidationError(
            f"You entered {len(endpoints)} endpoints: expected exactly one for this action.",
            code="too_many",
        )
    return endpoints


def _hex_digest(value: str, length: int, name: str) -> str:
    value = value.strip()
    if len(value) != length or not all(c in string.hexdigits for c in value):
        raise _invalid(value, f"a {name} hash", f"{length} hexadecimal characters")
    return value.lower()


def validate_sha1(value: str) -> str:
    """A SHA-1 hash in lower-case hexadecimal."""
    return _hex_digest(value, 40, "SHA-1")


def validate_sha256(value: str) -> str:
    """A SHA-256 hash in lower-case hexadecimal."""
    return _hex_digest(value, 64, "SHA-256")


def validate_ip_address(value: str) -> str:
    """An IPv4 or IPv6 address in canonical form."""
    value = value.strip()
    canonical = _ip_address(value)
    if canonical is None:
        raise _invalid(value, "an IP address", "an IPv4 address such as 192.0.2.10 or IPv6")
    return canonical


def validate_domain(value: str) -> str:
    """A domain name of two or more labels, in lower-case ASCII (punycode for IDNs)."""
    value = value.strip()
    try:
        ascii_name = value.encode("idna").decode("ascii").lower()
        # Decoding back refuses A-labels that are not valid punycode, such as `xn--zz`.
        ascii_name.encode("ascii").decode("idna")
    except UnicodeError:
        ascii_name = ""
    name = _hostname(ascii_name)
    if name is None or "." not in name:
        raise _invalid(
            value, "a domain name", "a name with at least two labels, such as example.com"
        )
    return name


def validate_url(value: str) -> str:
    """An http or https URL."""
    value = value.strip()
    expected = "an http:// or https:// address such as https://example.com/page"
    # URLValidator lets NUL and other control characters through in the path.
    if has_control_characters(value):
        raise _invalid(value, "a URL", expected)
    try:
        _URL_VALIDATOR(value)
    except ValidationError:
        raise _invalid(value, "a URL", expected) from None
    return value


OBJECT_TYPES: dict[str, Callable[[str], str]] = {
    "sha1": validate_sha1,
    "sha256": validate_sha256,
    "url": validate_url,
    "ip": validate_ip_address,
    "domain": validate_domain,
}


def _object(line: str, allowed_types: tuple[str, ...]) -> tuple[str, str]:
    """The (type, canonical value) of one `type:value` line."""
    kind, colon, value = line.partition(":")
    kind = kind.strip().lower()
    allowed = ", ".join(allowed_types)
    if not colon or not value.strip():
        raise _invalid(line, "an object", f"type:value, with a type among {allowed}")
    if kind not in allowed_types:
        raise _invalid(kind, "an allowed object type", f"one of {allowed}")
    return kind, OBJECT_TYPES[kind](value)


def validate_objects(text: str, allowed_types: tuple[str, ...]) -> list[dict[str, str]]:
    """Objects, one `type:value` per line, as `{"type": ..., "value": ...}` without repeats."""
    unknown = set(allowed_types) - OBJECT_TYPES.keys()
    if unknown:
        raise ValueError(f"Unknown object types: {sorted(unknown)}")
    pairs = _validate_list(
        _numbered_lines(text),
        lambda line: _object(line, allowed_types),
        plural="objects",
        empty_message="Enter at least one object, one per line as type:value.",
    )
    return [{"type": kind, "value": value} for kind, value in pairs]


def _is_date(yyyymmdd: str) -> bool:
    try:
        datetime.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:]))
    except ValueError:
        return False
    return True


def validate_alert_id(value: str) -> str:
    """A Workbench alert ID such as WB-12345-20261130-00001."""
    value = value.strip()
    match = _ALERT_ID.fullmatch(value)
    if match is None or not _is_date(match[2]):
        raise _invalid(
            value,
            "a Workbench alert ID",
            "WB-, digits, a date as YYYYMMDD and 5 digits, such as WB-12345-20261130-00001",
        )
    return "WB-" + "-".join(match.groups())


def validate_alert_ids(text: str) -> list[str]:
    """Workbench alert IDs, one per line or separated by commas, without repeats."""
    return _validate_list(
        _numbered_items(text),
        validate_alert_id,
        plural="alert IDs",
        empty_message="Enter at least one alert ID, one per line or separated by commas.",
    )


def validate_incident_id(value: str) -> str:
    """An incident ID: 1 to 64 letters, digits, hyphens or underscores."""
    value = value.strip()
    if not _INCIDENT_ID.fullmatch(value):
        raise _invalid(
            value, "an incident ID", "1 to 64 letters, digits, hyphens (-) or underscores (_)"
        )
    return value


def validate_cve_id(value: str) -> str:
    """A CVE ID such as CVE-2024-3094, in upper case."""
    value = value.strip()
    last_year = datetime.date.today().year + 1
    match = _CVE_ID.fullmatch(value)
    if match is None or not 1999 <= int(match[1]) <= last_year:
        raise _invalid(
            value,
            "a CVE ID",
            f"CVE-YYYY-NNNN, with a year from 1999 to {last_year} and 4 to 19 digits, "
            "such as CVE-2024-3094",
        )
    return value.upper()


def validate_cve_ids(text: str) -> list[str]:
    """CVE IDs, one per line or separated by commas, without repeats."""
    return _validate_list(
        _numbered_items(text),
        validate_cve_id,
        plural="CVE IDs",
        empty_message="Enter at least one CVE ID, one per line or separated by commas.",
    )


def validate_urls(text: str) -> list[str]:
    """http or https URLs, one per line, without repeats."""
    return _validate_list(
        _numbered_lines(text),
        validate_url,
        plural="URLs",
        empty_message="Enter at least one URL, one per line.",
    )


def validate_message_id(value: str) -> str:
    """An RFC 5322 Message-ID such as <id@host>."""
    value = value.strip()
    inner = value[1:-1] if len(value) > 2 and value[0] == "<" and value[-1] == ">" else ""
    left, _, right = inner.partition("@")
    if (
        len(value) > 998
        or not left
        or not right
        or "@" in right
        or any(c in "<>" or c.isspace() or not c.isprintable() for c in inner)
    ):
        raise _invalid(
            value,
            "a Message-ID",
            "<left@right> in angle brackets, with one @ and no spaces, "
            "such as <abc123@mail.example.com>",
        )
    return value


def validate_mailbox(value: str) -> str:
    """An e-mail address, with its domain in lower case."""
    value = value.strip()
    try:
        _EMAIL_VALIDATOR(value)
    except ValidationError:
        raise _invalid(value, "an e-mail address", "an address such as alice@example.com") from None
    local, _, domain = value.rpartition("@")
    return f"{local}@{domain.lower()}"


def _is_account_name(name: str, max_length: int) -> bool:
    return (
        1 <= len(name) <= max_length
        and not any(c in _ACCOUNT_FORBIDDEN or not c.isprintable() for c in name)
        and name.strip(" .") != ""
        and not name.endswith(".")
    )


def validate_account(value: str) -> str:
    """A user account: user@domain, DOMAIN\\user or a sAMAccountName, that is what it looks
    like (no look-alike letters of another script, no fullwidth or invisible characters)."""
    value = value.strip()
    refuse_look_alikes(value, what="an account name")
    if "@" in value:
        user, _, domain = value.rpartition("@")
        if _is_account_name(user, 64) and " " not in user:
            try:
                return f"{user}@{validate_domain(domain)}"
            except ValidationError:
                pass
    elif "\\" in value:
        domain, _, user = value.partition("\\")
        if _NETBIOS_DOMAIN.fullmatch(domain) and _is_account_name(user, 20):
            return f"{domain.upper()}\\{user}"
    elif _is_account_name(value, 20):
        return value
    raise _invalid(value, "an account", _ACCOUNT_EXPECTED)


def _is_allowed_windows_drive(drive: str) -> bool:
    """A drive letter or a UNC share, not a device path such as \\\\.\\ or \\\\?\\."""
    if len(drive) == 2:
        return drive[0] in string.ascii_letters and drive[1] == ":"
    return drive.startswith("\\\\") and drive[2:].split("\\")[0] not in ("", ".", "?")


def validate_absolute_path(value: str) -> str:
    """An absolute Windows (C:\\..., \\\\server\\share\\...) or POSIX (/...) path."""
    value = value.strip()
    if len(value) > MAX_PATH_LENGTH:
        raise ValidationError(
            f"The path is {len(value):,} characters long: expected at most {MAX_PATH_LENGTH:,}.",
            code="max_length",
        )
    if has_control_characters(value):
        raise _invalid(value, "a path", f"{_PATH_EXPECTED}, without control characters")
    # Windows trims trailing spaces from segments, so `.. ` climbs like `..`.
    if any(segment.strip(" ") == ".." for segment in re.split(r"[\\/]", value)):
        raise _invalid(value, "an accepted path", f"{_PATH_EXPECTED}, without `..` segments")
    if value.startswith("/"):
        absolute = PurePosixPath(value).is_absolute()
    else:
        windows = PureWindowsPath(value)
        absolute = windows.is_absolute() and _is_allowed_windows_drive(windows.drive)
    if not absolute:
        raise _invalid(value, "an absolute path", _PATH_EXPECTED)
    return value


def validate_process(value: str) -> str | int:
    """A process ID (returned as an int) or a process name without a path."""
    value = value.strip()
    if _PID.fullmatch(value):
        # Beyond 10 digits int() would be slow or refused, and no PID is that large.
        if len(value) > 10 or not 0 < int(value) <= 0xFFFF_FFFF:
            raise _invalid(value, "a process ID", "a positive whole number up to 4294967295")
        return int(value)
    if (
        not value
        or len(value) > 255
        or value in (".", "..")
        or "/" in value
        or "\\" in value
        or has_control_characters(value)
    ):
        raise _invalid(
            value,
            "a process",
            "a process ID (a positive whole number) or a process name without a path, "
            "such as notepad.exe",
        )
    return value


def validate_appliance(value: str) -> str:
    """A network appliance's hostname or IP address, in canonical form."""
    value = value.strip()
    canonical = _ip_address(value) or _hostname(value)
    if canonical is None:
        raise _invalid(value, "an appliance", "a hostname or an IP address")
    return canonical


def _statement_kind(node: exp.Expression) -> str:
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    return node.key.upper()


def _parse_error_text(error: sqlglot.errors.SqlglotError) -> str:
    details = getattr(error, "errors", None)
    if details:
        first = details[0]
        return f"{first['description']} (line {first['line']}, column {first['col']})"
    # The message may carry ANSI colour codes meant for a terminal.
    return re.sub(r"\x1b\[[0-9;]*m", "", str(error))


def validate_osquery(query: str) -> str:
    """One read-only SELECT statement (WITH and UNION allowed), parsed as SQLite."""
    query = query.strip()
    if len(query) > MAX_QUERY_LENGTH:
        raise ValidationError(
            f"The query is {len(query):,} characters long: expected at most "
            f"{MAX_QUERY_LENGTH:,} characters.",
            code="max_length",
        )
    refuse_invisible(query)
    try:
        statements = [s for s in sqlglot.parse(query, read="sqlite") if s is not None]
    except sqlglot.errors.SqlglotError as error:
        raise ValidationError(
            f"`{shown(query)}` is not valid SQL: {_parse_error_text(error)}; "
            f"expected {_QUERY_EXPECTED}.",
            code="invalid",
        ) from None
    except RecursionError:
        raise ValidationError(
            f"The query is nested too deeply to be read: expected {_QUERY_EXPECTED}.",
            code="invalid",
        ) from None
    if not statements:
        raise ValidationError(f"Enter a query: expected {_QUERY_EXPECTED}.", code="required")
    if len(statements) > 1:
        kinds = ", ".join(_statement_kind(s) for s in statements)
        raise ValidationError(
            f"The query has {len(statements)} statements ({kinds}): expected {_QUERY_EXPECTED}.",
            code="invalid",
        )
    statement = statements[0]
    if not isinstance(statement, exp.Query):
        raise _invalid(
            query, "a read-only query", f"{_QUERY_EXPECTED}, not {_statement_kind(statement)}"
        )
    for node in statement.walk():
        if isinstance(node, _WRITES):
            raise _invalid(
                query,
                "a read-only query",
                f"{_QUERY_EXPECTED}, with no {_statement_kind(node)} inside",
            )
        if isinstance(node, exp.Select) and not node.expressions:
            raise ValidationError(
                f"`{shown(query)}` selects nothing: expected {_QUERY_EXPECTED} that names what "
                f"it reads, such as {_QUERY_EXAMPLE}.",
                code="invalid",
            )
        if isinstance(node, exp.Identifier | exp.Anonymous):
            effect = ACTING_OSQUERY_TABLES.get(node.name.lower())
            if effect:
                raise ValidationError(
                    f"`{shown(query)}` uses the osquery table `{node.name.lower()}`, which "
                    f"{effect}: expected {_QUERY_EXPECTED} of tables that only read.",
                    code="acting_table",
                )
    return query


# What a rule file may hold, so that it compiles in about a second on one core (README,
# "Security model", has the figures): yara-x compiles regular expressions in a time that
# grows faster than their number and length, and text and hex strings linearly.
MAX_YARA_RULES = 5_000
MAX_YARA_STRINGS = 5_000
MAX_YARA_REGEXES = 1_000
MAX_YARA_REGEX_LENGTH = 1_000
MAX_YARA_REGEX_CHARACTERS = 50_000
# What compiling may take in its own process, which is stopped when it takes more.
YARA_COMPILE_SECONDS = 5
YARA_COMPILE_MEMORY = 512 * 1024 * 1024
_YARA_CHILD = Path(__file__).with_name("yara_compile.py")
_YARA_CHILD_OUT_OF_MEMORY = 3  # yara_compile.MEMORY_EXIT_STATUS
_YARA_RULES_EXPECTED = "expected fewer or simpler rules"
# The parts of a rule file that count toward the limits, found without compiling it: comments
# and text strings are skipped whole (a `$a =` inside one is not a string), a string definition
# (`$name =`, not `==`) is counted, and a regular expression is read to its closing slash.
_YARA_TOKEN = re.compile(
    r'//[^\n]*|/\*.*?(?:\*/|\Z)|"(?:\\.|[^"\\\n])*"?'
    r"|(?P<string>\$\w*\s*=(?!=)\s*)(?P<regex>/)?"
    r"|(?P<matches>\bmatches\s*)/"
    r"|(?<![\w$#@!])(?P<rule>rule)\b",
    re.DOTALL | re.ASCII,
)
_YARA_REGEX_BODY = re.compile(r"(?:\\.|[^\\/\n])*")


def _refuse_costly_yara(source: str) -> None:
    """Refuse a rule file with more rules, strings or regular expressions than compile in
    about a second, before any compiling."""
    rules = strings = regexes = regex_characters = 0
    position = 0
    while match := _YARA_TOKEN.search(source, position):
        position = match.end()
        if match["rule"]:
            rules += 1
        elif match["string"] is not None:
            strings += 1
        if match["regex"] or match["matches"] is not None:
            body = _YARA_REGEX_BODY.match(source, position)
            position = body.end()
            regexes += 1
            regex_characters += len(body[0])
            if len(body[0]) > MAX_YARA_REGEX_LENGTH:
                line = source.count("\n", 0, match.start()) + 1
                raise ValidationError(
                    f"The rule file has a regular expression of {len(body[0]):,} characters "
                    f"on line {line}: expected at most {MAX_YARA_REGEX_LENGTH:,} characters "
                    "in one.",
                    code="too_costly",
                )
    counted = [
        (rules, MAX_YARA_RULES, "rules"),
        (strings, MAX_YARA_STRINGS, "strings"),
        (regexes, MAX_YARA_REGEXES, "regular expressions"),
        (regex_characters, MAX_YARA_REGEX_CHARACTERS, "characters of regular expressions"),
    ]
    errors = [
        f"The rule file has {count:,} {what}: expected at most {limit:,}, so that it compiles "
        "in seconds."
        for count, limit, what in counted
        if count > limit
    ]
    if errors:
        raise ValidationError(errors, code="too_costly")


def _compile_error_message(detail: dict) -> str:
    labels = [label.get("text") for label in detail.get("labels", []) if label.get("text")]
    explanation = f" ({labels[0]})" if labels else ""
    if detail.get("line") is None:
        return f"The YARA rules do not compile: {detail.get('title')}{explanation}."
    return (
        f"The YARA rules do not compile: line {detail.get('line')}, column "
        f"{detail.get('column')}: {detail.get('title')}{explanation}."
    )


def _compile_yara(source: str) -> list[str]:
    """The compiler's error messages (none when the rules compile), from a child process that
    may use YARA_COMPILE_SECONDS and YARA_COMPILE_MEMORY and is killed when it runs over."""
    too_slow = ValidationError(
        f"The YARA rules took more than {YARA_COMPILE_SECONDS} seconds to compile and were "
        f"stopped: {_YARA_RULES_EXPECTED} (fewer regular expressions, fewer xor or base64 "
        "strings).",
        code="too_slow",
    )
    command = [
        sys.executable,
        "-I",
        str(_YARA_CHILD),
        str(YARA_COMPILE_SECONDS),
        str(YARA_COMPILE_MEMORY),
    ]
    try:
        # The child gets no environment: nothing of the portal's secrets is in reach of the rules.
        child = subprocess.run(  # noqa: S603 (our own interpreter, script and numbers)
            command,
            input=source.encode(),
            capture_output=True,
            timeout=YARA_COMPILE_SECONDS,
            env={},
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise too_slow from None
    except OSError as error:
        raise ValidationError(
            f"The YARA rules could not be checked ({error.strerror}): try again in a minute.",
            code="unchecked",
        ) from None
    if child.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        raise too_slow
    if (
        child.returncode in (_YARA_CHILD_OUT_OF_MEMORY, -signal.SIGABRT)
        or b"memory allocation" in child.stderr
    ):
        raise ValidationError(
            f"The YARA rules needed more than {YARA_COMPILE_MEMORY // 1_048_576:,} MB of memory "
            f"to compile and were stopped: {_YARA_RULES_EXPECTED}.",
            code="too_large",
        )
    try:
        errors = json.loads(child.stdout)["errors"]
    except (ValueError, KeyError, TypeError):
        raise ValidationError(
            f"The YARA rules could not be checked (the compiler stopped with status "
            f"{child.returncode}): try again, or {_YARA_RULES_EXPECTED}.",
            code="unchecked",
        ) from None
    return [_compile_error_message(detail) for detail in errors]


def validate_yara_rules(data: UploadedFile | bytes) -> str:
    """The source of a YARA rule file under 1 MB that compiles within bounded time and memory:
    counted first (MAX_YARA_*), then compiled in a child process (YARA_COMPILE_*), with
    `include` disabled so that no file of the portal's own disk is read."""
    source = read_text(data, what="The rule file", expected="YARA rules as UTF-8 text")
    if not source.strip():
        raise ValidationError("The rule file is empty: expected YARA rules.", code="required")
    # Approvers read the rules on the request's page.
    refuse_invisible(source, what="The rule file")
    _refuse_costly_yara(source)
    errors = _compile_yara(source)
    if errors:
        raise ValidationError(errors, code="invalid")
    return source

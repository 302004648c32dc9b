"""Validators for the parameters of response actions.

Each function takes what the user typed and returns the canonical value, or raises
`ValidationError` with a message that quotes the bad value and says what is expected.
They are pure: no database, and no exception other than `ValidationError` for any string.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import string
import unicodedata
import uuid
from collections.abc import Callable, Hashable, Iterable
from pathlib import PurePosixPath, PureWindowsPath
from typing import TypeVar

import sqlglot
import yara_x
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


def shown(value: str, limit: int = 80) -> str:
    """The value as it can be quoted in a message: invisible characters escaped, long values cut."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in value[:limit])
    return text + "…" if len(value) > limit else text


def _invalid(value: str, what: str, expected: str) -> ValidationError:
    return ValidationError(f"`{shown(value)}` is not {what}: expected {expected}.", code="invalid")


def has_control_characters(value: str) -> bool:
    """Whether `value` holds a control character (line breaks, tabs and NUL among them) or a
    lone surrogate: neither belongs in a one-line value, and no database text stores the last."""
    return any(unicodedata.category(c) in ("Cc", "Cs") for c in value)


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
    """A user account: user@domain, DOMAIN\\user or a sAMAccountName."""
    value = value.strip()
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
    return query


def _compile_error_messages(compiler: yara_x.Compiler, error: yara_x.CompileError) -> list[str]:
    messages = []
    for detail in compiler.errors()[:MAX_LISTED_ERRORS]:
        labels = [label.get("text") for label in detail.get("labels", []) if label.get("text")]
        explanation = f" ({labels[0]})" if labels else ""
        messages.append(
            f"The YARA rules do not compile: line {detail.get('line')}, column "
            f"{detail.get('column')}: {detail.get('title')}{explanation}."
        )
    return messages or [f"The YARA rules do not compile: {error}"]


def validate_yara_rules(data: UploadedFile | bytes) -> str:
    """The source of a YARA rule file under 1 MB that compiles."""
    source = read_text(data, what="The rule file", expected="YARA rules as UTF-8 text")
    if not source.strip():
        raise ValidationError("The rule file is empty: expected YARA rules.", code="required")
    # An `include` would read files from the portal's own disk and echo them in errors.
    compiler = yara_x.Compiler(includes_enabled=False)
    try:
        compiler.add_source(source)
        compiler.build()
    except yara_x.CompileError as error:
        raise ValidationError(_compile_error_messages(compiler, error), code="invalid") from None
    return source

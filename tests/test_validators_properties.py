"""Hostile input, generated: validators raise ValidationError or return canonical values."""

import pytest
from django.core.exceptions import ValidationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actions import validators
from approvals.settings_forms import parse_endpoint_csv

SINGLE_VALUE = [
    validators.validate_endpoint,
    validators.validate_sha1,
    validators.validate_sha256,
    validators.validate_ip_address,
    validators.validate_domain,
    validators.validate_url,
    validators.validate_alert_id,
    validators.validate_incident_id,
    validators.validate_cve_id,
    validators.validate_message_id,
    validators.validate_mailbox,
    validators.validate_account,
    validators.validate_absolute_path,
    validators.validate_appliance,
    validators.validate_osquery,
]
LISTS = [
    validators.validate_endpoints,
    validators.validate_alert_ids,
    validators.validate_cve_ids,
    validators.validate_urls,
    lambda text: [
        f"{item['type']}:{item['value']}"
        for item in validators.validate_objects(text, ("sha1", "sha256", "url", "ip", "domain"))
    ],
]
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text that looks like the real thing some of the time, and like anything the rest of it.
hostile_text = st.one_of(
    st.text(max_size=300),
    st.text(alphabet="abcdefABCDEF0123456789-.:/\\@<>_ \n\t", max_size=120),
    st.from_regex(r"[a-z0-9-]{1,20}(\.[a-z0-9-]{1,20}){0,3}", fullmatch=True),
    st.ip_addresses().map(str),
    st.uuids().map(str),
    st.sampled_from(["=cmd|' /C calc'!A0", "\x00", "..\\..", "SELECT 1; DROP TABLE x", " "]),
    # What approvers would misread: overrides, zero-width and other invisible characters,
    # look-alike letters of another script, fullwidth and mathematical variants.
    st.sampled_from(
        [
            "invoice\u202efdp.exe",
            "ws\u200b-01",
            "\u2066admin\u2069",
            "\ufeffroot",
            "\u0430dministrator",
            "\u0430\u0441\u0435",
            "\uff41\uff44\uff4d\uff49\uff4e",
            "\U0001d41a\U0001d41d\U0001d426\U0001d422\U0001d427",
            "adm\u0131n@example.com",
            'SELECT * FROM "CURL"',
            "SELECT -- nothing",
        ]
    ),
)
# Characters that show as nothing or reorder their neighbours, in every class refused.
INVISIBLE_CHARACTERS = (
    "\u202e\u202d\u200b\u200c\u200d\u200e\u200f\u2066\u2067\u2068\u2069\ufeff\u00ad"
    "\u061c\u180e\u2060\u2028\u2029\u034f\u3164\u115f\ufe0f\U000e0041\U000e0100\ue000"
    "\u0378\x1b"
)
invisible = st.sampled_from(INVISIBLE_CHARACTERS)


def canonical_or_refused(validate, value):
    """The validator's answer; a second pass over an accepted value gives the same answer."""
    try:
        accepted = validate(value)
    except ValidationError as error:
        assert error.messages and all(isinstance(m, str) and m for m in error.messages)
        return None
    return accepted


@pytest.mark.parametrize("validate", SINGLE_VALUE, ids=lambda v: v.__name__)
@FAST
@given(value=hostile_text)
def test_single_values_are_refused_or_canonical(validate, value):
    accepted = canonical_or_refused(validate, value)
    if accepted is not None and isinstance(accepted, str):
        assert validate(accepted) == accepted


@pytest.mark.parametrize("validate", LISTS, ids=range(len(LISTS)))
@FAST
@given(lines=st.lists(hostile_text, max_size=8))
def test_lists_are_refused_or_canonical(validate, lines):
    accepted = canonical_or_refused(validate, "\n".join(lines))
    if accepted is not None:
        assert len(accepted) == len(set(accepted)) <= validators.MAX_TARGETS
        assert validate("\n".join(accepted)) == accepted


@FAST
@given(value=st.one_of(st.text(max_size=40), st.integers().map(str)))
def test_processes_are_refused_or_canonical(value):
    accepted = canonical_or_refused(validators.validate_process, value)
    if accepted is not None:
        assert validators.validate_process(str(accepted)) == accepted


@FAST
@given(data=st.one_of(st.binary(max_size=400), st.text(max_size=400).map(str.encode)))
def test_yara_rule_files_are_refused_or_compile(data):
    canonical_or_refused(validators.validate_yara_rules, data)


@FAST
@given(
    data=st.one_of(
        st.binary(max_size=400),
        st.lists(hostile_text, max_size=10).map(lambda rows: "\r\n".join(rows).encode()),
    )
)
def test_scope_csv_files_are_refused_whole_or_canonical(data):
    accepted = canonical_or_refused(parse_endpoint_csv, data)
    if accepted is not None:
        assert parse_endpoint_csv("\n".join(accepted).encode()) == accepted


@pytest.mark.parametrize("validate", SINGLE_VALUE, ids=lambda v: v.__name__)
@FAST
@given(value=hostile_text)
def test_no_accepted_value_holds_an_invisible_character(validate, value):
    accepted = canonical_or_refused(validate, value)
    if isinstance(accepted, str):
        assert not any(c in INVISIBLE_CHARACTERS for c in accepted)


@FAST
@given(text=st.text(max_size=60), character=invisible, data=st.data())
def test_an_invisible_character_anywhere_is_refused_by_its_code_point(text, character, data):
    at = data.draw(st.integers(min_value=0, max_value=len(text)))
    with pytest.raises(ValidationError) as exc:
        validators.refuse_invisible(text[:at] + character + text[at:])
    assert " holds U+" in exc.value.messages[0]


@FAST
@given(value=hostile_text, character=invisible)
def test_an_account_with_an_invisible_character_is_refused(value, character):
    with pytest.raises(ValidationError):
        # Between letters: strip() would take a trailing separator away, not keep it.
        validators.validate_account("a" + character + "b" + value)


@FAST
@given(
    table=st.sampled_from(sorted(validators.ACTING_OSQUERY_TABLES)),
    case=st.sampled_from([str.lower, str.upper, str.title]),
    quote=st.sampled_from(["{}", '"{}"', "[{}]", "`{}`", "main.{}"]),
    template=st.sampled_from(
        [
            "SELECT * FROM {}",
            "SELECT * FROM users JOIN {} ON 1",
            "SELECT (SELECT 1 FROM {}) AS x",
            "WITH x AS (SELECT * FROM {}) SELECT * FROM x",
            "SELECT 1 UNION SELECT * FROM {}",
            "SELECT * FROM users WHERE uid IN (SELECT uid FROM {})",
        ]
    ),
)
def test_an_acting_osquery_table_is_refused_in_any_spelling(table, case, quote, template):
    query = template.format(quote.format(case(table)))
    with pytest.raises(ValidationError) as exc:
        validators.validate_osquery(query)
    assert f"uses the osquery table `{table}`" in exc.value.messages[0]

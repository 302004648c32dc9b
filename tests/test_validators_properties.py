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
)


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

"""Operators cannot stall the portal: every parser that meets user input has a bounded cost.

No test here measures time (timings are in README, "Security model"): each asserts the message
a too costly input gets, and that the costly step was not reached.
"""

import pytest
from django.core.exceptions import ValidationError

from actions import validators
from actions.validators import validate_osquery, validate_yara_rules
from approvals.settings_forms import parse_endpoint_csv

EXPECTED_SECONDS = "so that it compiles in seconds."


def messages_of(validate, data) -> list[str]:
    with pytest.raises(ValidationError) as exc:
        validate(data)
    return exc.value.messages


def regex_rule(count: int, regex=lambda i: f"a[b-z]{{1,20}}x.*y{i}[0-9]+") -> bytes:
    lines = ["rule many_regexes {", "  strings:"]
    lines += [f"    $r{i} = /{regex(i)}/" for i in range(count)]
    lines += ["  condition: any of them", "}"]
    return "\n".join(lines).encode()


@pytest.fixture
def no_compiling(monkeypatch):
    """Fail the test if the rules reach the compiler."""

    def compile_yara(source):
        raise AssertionError("the rules were compiled")

    monkeypatch.setattr(validators, "_compile_yara", compile_yara)


# YARA: counted before compiling


def test_a_file_of_20000_regular_expressions_is_refused_before_compiling(no_compiling):
    data = regex_rule(20_000)
    assert len(data) > 600_000
    regex_characters = sum(len(f"a[b-z]{{1,20}}x.*y{i}[0-9]+") for i in range(20_000))
    assert messages_of(validate_yara_rules, data) == [
        f"The rule file has 20,000 strings: expected at most 5,000, {EXPECTED_SECONDS}",
        f"The rule file has 20,000 regular expressions: expected at most 1,000, {EXPECTED_SECONDS}",
        f"The rule file has {regex_characters:,} characters of regular expressions: expected at "
        f"most 50,000, {EXPECTED_SECONDS}",
    ]


def test_1000_regular_expressions_compile():
    data = regex_rule(1_000, regex=lambda i: f"ab{i}[0-9]+cd")
    assert validate_yara_rules(data) == data.decode()


def test_1001_regular_expressions_are_refused(no_compiling):
    data = regex_rule(1_001, regex=lambda i: f"ab{i}")
    assert messages_of(validate_yara_rules, data) == [
        f"The rule file has 1,001 regular expressions: expected at most 1,000, {EXPECTED_SECONDS}"
    ]


def test_a_quote_or_a_definition_inside_a_regular_expression_hides_no_other(no_compiling):
    # Were the quote read as the start of a text string, the rest of the file would not count.
    data = regex_rule(1_001, regex=lambda i: f'"{i} $x = ')
    assert messages_of(validate_yara_rules, data) == [
        f"The rule file has 1,001 regular expressions: expected at most 1,000, {EXPECTED_SECONDS}"
    ]


def test_regular_expressions_in_conditions_count(no_compiling):
    condition = " or ".join(f"pe.sections[0].name matches /s{i}/" for i in range(1_001))
    data = f'import "pe"\nrule a {{ condition: {condition} }}'.encode()
    assert messages_of(validate_yara_rules, data) == [
        f"The rule file has 1,001 regular expressions: expected at most 1,000, {EXPECTED_SECONDS}"
    ]


def test_a_long_regular_expression_is_refused_with_its_line(no_compiling):
    regex = "(abc|def)" * 112  # 1,008 characters
    data = (
        f"rule a {{\n  strings:\n    $ok = /short/\n    $long = /{regex}/\n"
        "  condition: any of them\n}"
    )
    assert messages_of(validate_yara_rules, data.encode()) == [
        "The rule file has a regular expression of 1,008 characters on line 4: expected at "
        "most 1,000 characters in one."
    ]


def test_5001_strings_are_refused(no_compiling):
    strings = "\n".join(f'    $s{i} = "text {i}"' for i in range(5_001))
    data = f"rule a {{\n  strings:\n{strings}\n  condition: any of them\n}}".encode()
    assert messages_of(validate_yara_rules, data) == [
        f"The rule file has 5,001 strings: expected at most 5,000, {EXPECTED_SECONDS}"
    ]


def test_5001_rules_are_refused(no_compiling):
    data = "\n".join(f"private rule r{i} {{ condition: true }}" for i in range(5_001)).encode()
    assert messages_of(validate_yara_rules, data) == [
        f"The rule file has 5,001 rules: expected at most 5,000, {EXPECTED_SECONDS}"
    ]


def test_comments_and_text_strings_count_for_nothing():
    hidden = "\n".join(f"// $r{i} = /x{i}/ rule r{i}" for i in range(6_000))
    data = (
        f"{hidden}\n/* $a = /a/ rule b */\n"
        'rule a {\n  meta:\n    note = "$r = /not a regex/ rule c"\n'
        '  strings:\n    $a = "$b = /x/ rule d"\n  condition: $a and #a == 1\n}\n'
    ).encode()
    assert validate_yara_rules(data) == data.decode()


# YARA: compiled in a child process, stopped when it runs over


def test_rules_that_compile_too_long_are_stopped(monkeypatch):
    # Without the counts, the 20,000 regular expressions take minutes to compile.
    monkeypatch.setattr(validators, "_refuse_costly_yara", lambda source: None)
    monkeypatch.setattr(validators, "YARA_COMPILE_SECONDS", 2)
    assert messages_of(validate_yara_rules, regex_rule(20_000)) == [
        "The YARA rules took more than 2 seconds to compile and were stopped: expected fewer "
        "or simpler rules (fewer regular expressions, fewer xor or base64 strings)."
    ]


def test_rules_that_need_too_much_memory_are_stopped(monkeypatch):
    # 5,000 xor strings need about 300 MB to compile.
    monkeypatch.setattr(validators, "YARA_COMPILE_MEMORY", 128 * 1024 * 1024)
    strings = "\n".join(
        f'    $s{i} = "text string {i}" xor(0-255) ascii wide' for i in range(5_000)
    )
    data = f"rule a {{\n  strings:\n{strings}\n  condition: any of them\n}}".encode()
    assert messages_of(validate_yara_rules, data) == [
        "The YARA rules needed more than 128 MB of memory to compile and were stopped: "
        "expected fewer or simpler rules."
    ]


def test_the_child_reports_every_compile_error():
    data = b"rule a { condition: x }\nrule b { condition: y }"
    assert messages_of(validate_yara_rules, data) == [
        "The YARA rules do not compile: line 1, column 21: unknown identifier `x` "
        "(this identifier has not been declared).",
        "The YARA rules do not compile: line 2, column 21: unknown identifier `y` "
        "(this identifier has not been declared).",
    ]


def test_the_child_reads_no_included_file(tmp_path):
    secret = tmp_path / "secret.yar"
    secret.write_text('rule leaked { condition: true } // "top secret"')
    [message] = messages_of(
        validate_yara_rules, f'include "{secret}"\nrule a {{ condition: true }}'.encode()
    )
    assert "include statements not allowed" in message
    assert "top secret" not in message and "leaked" not in message


@pytest.mark.parametrize(
    "data",
    [
        b"rule a {\n  condition:\n    \xe2\x80\xae true\n}",  # U+202E
        b"rule a {\n  condition:\n    \xe2\x80\x8b true\n}",  # U+200B
    ],
)
def test_invisible_characters_in_rules_are_refused_with_their_place(no_compiling, data):
    character = data.decode()[data.decode().index("true") - 2]
    name = {"\u202e": "U+202E RIGHT-TO-LEFT OVERRIDE", "\u200b": "U+200B ZERO WIDTH SPACE"}
    assert messages_of(validate_yara_rules, data) == [
        f"The rule file holds {name[character]} on line 3, column 5: expected visible "
        "characters only, so that the approver reads what will run (retype the text rather "
        "than paste it)."
    ]


# osquery: bounded by its length


@pytest.mark.parametrize(
    "query",
    [
        "SELECT " + "1+" * 4_990 + "1",
        "SELECT " + "(" * 4_990 + "1" + ")" * 4_990,
        "SELECT " + "NOT " * 2_490 + "1",
        "SELECT * FROM t " + "JOIN t USING (a) " * 580,
        "SELECT CASE " + "WHEN 1 THEN 2 " * 700 + "END",
    ],
    ids=["sums", "parentheses", "nots", "joins", "cases"],
)
def test_a_hostile_query_under_the_length_limit_gets_an_answer(query):
    assert len(query) <= validators.MAX_QUERY_LENGTH
    try:
        assert validate_osquery(query) == query.strip()
    except ValidationError as error:
        assert error.messages


def test_a_one_megabyte_query_is_refused_by_its_length_before_parsing(monkeypatch):
    monkeypatch.setattr(validators.sqlglot, "parse", None)
    query = "SELECT " + "1+" * 524_284 + "1"
    assert messages_of(validate_osquery, query) == [
        f"The query is {len(query):,} characters long: expected at most 10,000 characters."
    ]


# Scope CSV: bounded by its number of different rows


def test_a_csv_with_more_different_rows_than_endpoints_is_refused_before_any_is_checked(
    monkeypatch,
):
    def validate_endpoint(value):
        raise AssertionError("a row was checked")

    monkeypatch.setattr("approvals.settings_forms.validate_endpoint", validate_endpoint)
    data = "\n".join(f"bad_{n}!" for n in range(60_000)).encode()
    assert len(data) < validators.MAX_UPLOAD_BYTES
    assert messages_of(parse_endpoint_csv, data) == [
        "The file has 60,000 different rows: expected at most 10,000 endpoints."
    ]


def test_a_csv_of_10000_endpoints_with_a_header_and_other_cases_is_read():
    rows = [f"host-{n}" for n in range(10_000)]
    data = "\n".join(["Hostname", *rows, *(row.upper() for row in rows), ""]).encode()
    assert parse_endpoint_csv(data) == rows


def test_a_csv_of_10001_different_rows_is_still_read_row_by_row():
    data = "\n".join(["hostname", *(f"bad_{n}!" for n in range(10_000))]).encode()
    messages = messages_of(parse_endpoint_csv, data)
    assert messages[0] == (
        "Nothing was imported: 10,000 rows are not valid. Correct the file and import it again."
    )

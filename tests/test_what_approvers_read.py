"""What approvers read must be what will run: no invisible or reordering characters, no
look-alike account names, and osquery queries that only read."""

import pytest
from django import forms
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile

from actions.validators import (
    ACTING_OSQUERY_TABLES,
    refuse_invisible,
    shown,
    validate_account,
    validate_osquery,
)
from approvals.forms import FORMS
from approvals.script_views import ScriptUploadForm

from .test_action_forms import bind, errors_of, make_script, rule_file, valid_submissions

VISIBLE_ONLY = (
    "expected visible characters only, so that the approver reads what will run "
    "(retype the text rather than paste it)."
)

# Each character with the name Unicode gives it, written out here rather than looked up.
INVISIBLE = {
    "\u202e": "U+202E RIGHT-TO-LEFT OVERRIDE",
    "\u202d": "U+202D LEFT-TO-RIGHT OVERRIDE",
    "\u200b": "U+200B ZERO WIDTH SPACE",
    "\u200c": "U+200C ZERO WIDTH NON-JOINER",
    "\u200d": "U+200D ZERO WIDTH JOINER",
    "\u200f": "U+200F RIGHT-TO-LEFT MARK",
    "\u2066": "U+2066 LEFT-TO-RIGHT ISOLATE",
    "\u2067": "U+2067 RIGHT-TO-LEFT ISOLATE",
    "\u2068": "U+2068 FIRST STRONG ISOLATE",
    "\u2069": "U+2069 POP DIRECTIONAL ISOLATE",
    "\ufeff": "U+FEFF ZERO WIDTH NO-BREAK SPACE",
    "\u00ad": "U+00AD SOFT HYPHEN",
    "\u061c": "U+061C ARABIC LETTER MARK",
    "\u2060": "U+2060 WORD JOINER",
    "\u180e": "U+180E MONGOLIAN VOWEL SEPARATOR",
    "\u2028": "U+2028 LINE SEPARATOR",
    "\u2029": "U+2029 PARAGRAPH SEPARATOR",
    "\u034f": "U+034F COMBINING GRAPHEME JOINER",
    "\u3164": "U+3164 HANGUL FILLER",
    "\u115f": "U+115F HANGUL CHOSEONG FILLER",
    "\ufe0f": "U+FE0F VARIATION SELECTOR-16",
    "\U000e0041": "U+E0041 TAG LATIN CAPITAL LETTER A",
    "\U000e0100": "U+E0100 VARIATION SELECTOR-17",
    "\ue000": "U+E000 (a private-use character)",
    "\u0378": "U+0378 (an unassigned code point)",
    "\x1b": "U+001B (a control character)",
    "\x7f": "U+007F (a control character)",
}


def escaped(c: str) -> str:
    code = ord(c)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


@pytest.mark.parametrize("character", INVISIBLE, ids=[n.split(" ")[0] for n in INVISIBLE.values()])
def test_an_invisible_character_is_refused_by_its_code_point(character):
    with pytest.raises(ValidationError) as exc:
        refuse_invisible(f"invoice{character}fdp.exe")
    assert exc.value.messages == [
        f"`invoice{escaped(character)}fdp.exe` holds {INVISIBLE[character]}: {VISIBLE_ONLY}"
    ]


def test_the_line_of_a_longer_text_is_named():
    with pytest.raises(ValidationError) as exc:
        refuse_invisible("ws-1\r\nws-2\nws\u200b-3\nws-4")
    assert exc.value.messages == [
        f"Line 3: `ws\\u200b-3` holds U+200B ZERO WIDTH SPACE: {VISIBLE_ONLY}"
    ]


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        "tab\tand\r\nline breaks\n",
        "Müller",
        "Mu\u0308ller",
        "山田太郎",
        "Иван",
        "😀 done",
        "",
    ],
)
def test_visible_text_is_kept(value):
    assert refuse_invisible(value) == value


def test_a_message_never_carries_an_invisible_character():
    assert shown("a\u3164b\u202ec\U000e0100") == "a\\u3164b\\u202ec\\U000e0100"


# Every field of every request form


def hostile_twin(value: str) -> tuple[str, str]:
    """The value with U+202E after its first character, and the message it must get."""
    lines = value.strip().splitlines()
    first = lines[0][:1] + "\u202e" + lines[0][1:]
    quoted = first[:80].replace("\u202e", "\\u202e") + ("…" if len(first) > 80 else "")
    prefix = "Line 1: " if len(lines) > 1 else ""
    return "\n".join([first, *lines[1:]]), (
        f"{prefix}`{quoted}` holds U+202E RIGHT-TO-LEFT OVERRIDE: {VISIBLE_ONLY}"
    )


def test_every_typed_field_of_every_form_refuses_a_right_to_left_override(acme, operator):
    script = make_script(acme, operator)
    submissions = valid_submissions(script)
    expected, refused = {}, {}
    for key, form_class in FORMS.items():
        data, files, _, _ = submissions[key]
        for name, value in data.items():
            field = form_class.base_fields[name]
            if not isinstance(field, forms.CharField) or not value:
                continue
            hostile, message = hostile_twin(value)
            files_again = rule_file() if files else None
            form = bind(key, acme, {**data, name: hostile}, files_again)
            expected[key, name] = message
            refused[key, name] = errors_of(form, name)
    assert len(expected) >= 25
    assert refused == expected


def test_a_file_name_that_reads_backwards_is_refused(acme):
    form = bind(
        "terminate_process",
        acme,
        {"endpoints": "ws-042", "sha1": "a" * 40, "file_name": "invoice\u202efdp.exe"},
    )
    assert errors_of(form, "file_name") == (
        f"`invoice\\u202efdp.exe` holds U+202E RIGHT-TO-LEFT OVERRIDE: {VISIBLE_ONLY}"
    )


def test_a_rule_file_whose_name_reads_backwards_is_refused(acme):
    form = bind(
        "run_yara_rules",
        acme,
        {"endpoints": "ws-042", "target_path": "C:\\Users"},
        rule_file(name="rules\u202eray.txt"),
    )
    assert errors_of(form, "rule_file") == (
        f"`rules\\u202eray.txt` holds U+202E RIGHT-TO-LEFT OVERRIDE: {VISIBLE_ONLY}"
    )


# The script library


def upload(file_name: str, content: bytes, name: str = "") -> list[str]:
    """The errors of the upload form (bound directly: the test client's multipart encoding
    does not carry every character of a file name)."""
    form = ScriptUploadForm({"name": name}, {"file": SimpleUploadedFile(file_name, content)})
    assert not form.is_valid()
    return [m for messages in form.errors.values() for m in messages]


@pytest.mark.parametrize(
    ("file_name", "name", "message"),
    [
        (
            "collect.ps1",
            "collect\u200b.ps1",
            f"`collect\\u200b.ps1` holds U+200B ZERO WIDTH SPACE: {VISIBLE_ONLY}",
        ),
        (
            "collect\u202e1sp.ps1",
            "",
            f"`collect\\u202e1sp.ps1` holds U+202E RIGHT-TO-LEFT OVERRIDE: {VISIBLE_ONLY}",
        ),
    ],
)
def test_a_script_name_with_an_invisible_character_is_refused(file_name, name, message):
    assert upload(file_name, b"Get-Process\n", name) == [message]


def test_a_script_whose_code_reads_otherwise_than_it_runs_is_refused():
    # Trojan Source: the override makes the comment appear to close the condition.
    content = (
        'if ($user -eq "admin") {\n  # ok\n  $access = "user\u202e \u2066# admin\u2069 \u2066"\n}\n'
    )
    assert upload("check.ps1", content.encode()) == [
        "The script holds U+202E RIGHT-TO-LEFT OVERRIDE on line 3, column 18: " + VISIBLE_ONLY
    ]


# Account names that pass for another

ONE_SCRIPT = "expected an account name in the letters of one script."


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "\u0430dministrator",
            "`\u0430dministrator` mixes Cyrillic and Latin letters (U+0430 CYRILLIC SMALL "
            f"LETTER A), so it can pass for another name: {ONE_SCRIPT}",
        ),
        (
            "ACME\\\u0430dmin",
            "`ACME\\\u0430dmin` mixes Latin and Cyrillic letters (U+0430 CYRILLIC SMALL "
            f"LETTER A), so it can pass for another name: {ONE_SCRIPT}",
        ),
        (
            "admin@ex\u0430mple.com",
            "`admin@ex\u0430mple.com` mixes Latin and Cyrillic letters (U+0430 CYRILLIC SMALL "
            f"LETTER A), so it can pass for another name: {ONE_SCRIPT}",
        ),
        (
            "\u0391dmin",
            "`\u0391dmin` mixes Greek and Latin letters (U+0391 GREEK CAPITAL LETTER ALPHA), "
            f"so it can pass for another name: {ONE_SCRIPT}",
        ),
        (
            "\uff41\uff44\uff4d\uff49\uff4e",
            "`\uff41\uff44\uff4d\uff49\uff4e` holds U+FF41 FULLWIDTH LATIN SMALL LETTER A, a "
            "variant of `a`: expected an account name in plain characters, such as `admin`.",
        ),
        (
            "\U0001d41a\U0001d41d\U0001d426\U0001d422\U0001d427",
            "`\U0001d41a\U0001d41d\U0001d426\U0001d422\U0001d427` holds U+1D41A MATHEMATICAL "
            "BOLD SMALL A, a variant of `a`: expected an account name in plain characters, "
            "such as `admin`.",
        ),
        (
            "\u0430\u0441\u0435",
            "`\u0430\u0441\u0435` looks like `ace` but holds U+0430 CYRILLIC SMALL LETTER A: "
            "expected an account name as it is written in the directory, in plain ASCII if "
            "it is `ace`.",
        ),
        (
            "adm\u0131n",
            "`adm\u0131n` looks like `admin` but holds U+0131 LATIN SMALL LETTER DOTLESS I: "
            "expected an account name as it is written in the directory, in plain ASCII if "
            "it is `admin`.",
        ),
        (
            "admin\u200b",
            f"`admin\\u200b` holds U+200B ZERO WIDTH SPACE: {VISIBLE_ONLY}",
        ),
    ],
)
def test_a_look_alike_account_is_refused(acme, value, message):
    with pytest.raises(ValidationError) as exc:
        validate_account(value)
    assert exc.value.messages == [message]
    disable = bind("disable_user_account", acme, {"account": value, "description": "x"})
    assert errors_of(disable, "account") == message
    exception = bind(
        "add_detection_model_exception",
        acme,
        {"detection_model": "Model", "scope": value, "description": "x"},
    )
    assert errors_of(exception, "scope") == message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("M\u00fcller", "M\u00fcller"),
        ("\u0418\u0432\u0430\u043d", "\u0418\u0432\u0430\u043d"),
        ("\u5c71\u7530\u592a\u90ce", "\u5c71\u7530\u592a\u90ce"),
        ("yamada\u5c71\u7530", "yamada\u5c71\u7530"),
        ("j.doe@Example.COM", "j.doe@example.com"),
        ("acme\\administrator", "ACME\\administrator"),
    ],
)
def test_an_account_in_one_script_is_kept(value, expected):
    assert validate_account(value) == expected


# osquery

EXAMPLE_QUERY = "SELECT name, path FROM processes"


@pytest.mark.parametrize(
    "query",
    [
        "SELECT",
        "select",
        "SELECT -- nothing",
        "SELECT /* nothing */",
        "SELECT FROM processes",
        "SELECT name FROM processes UNION SELECT",
        "SELECT * FROM (SELECT)",
        "SELECT * FROM users WHERE uid IN (SELECT)",
    ],
)
def test_a_select_of_nothing_is_refused(query):
    with pytest.raises(ValidationError) as exc:
        validate_osquery(query)
    assert exc.value.messages == [
        f"`{query}` selects nothing: expected one read-only SELECT statement that names what "
        f"it reads, such as {EXAMPLE_QUERY}."
    ]


EFFECTS = {
    "curl": "sends an HTTP request from the endpoint",
    "curl_certificate": "connects from the endpoint to the hosts it is given",
    "carves": "starts a file carve that uploads files from the endpoint",
    "carving": "starts a file carve that uploads files from the endpoint",
    "yara": "runs a YARA scan, which is Run YARA Rules' job",
}
SPELLINGS = [
    "SELECT * FROM {t}",
    "select * from {T}",
    'SELECT * FROM "{t}"',
    'SELECT * FROM "{T}"',
    "SELECT * FROM [{t}]",
    "SELECT * FROM `{t}`",
    "SELECT * FROM main.{t}",
    "SELECT * FROM {t}('https://example.com/')",
    "SELECT * FROM users JOIN {t} ON 1 = 1",
    "SELECT * FROM users, {t} AS harmless",
    "SELECT * FROM users NATURAL JOIN {t}",
    "SELECT (SELECT count(*) FROM {t}) AS n",
    "SELECT * FROM users WHERE EXISTS (SELECT 1 FROM {t} WHERE 1)",
    "SELECT * FROM users WHERE uid IN {t}",
    "WITH x AS (SELECT * FROM {t}) SELECT * FROM x",
    "SELECT username FROM users UNION SELECT * FROM {t}",
    "SELECT * FROM (SELECT * FROM (SELECT * FROM {t}))",
    "SELECT *\nFROM\n  /* read only */ {t} -- really",
]


@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize("table", sorted(EFFECTS))
def test_a_table_that_acts_on_the_endpoint_is_refused_however_it_is_named(table, spelling):
    query = spelling.format(t=table, T=table.upper())
    with pytest.raises(ValidationError) as exc:
        validate_osquery(query)
    assert exc.value.messages == [
        f"`{shown(query)}` uses the osquery table `{table}`, which {EFFECTS[table]}: expected "
        "one read-only SELECT statement of tables that only read."
    ]


def test_the_acting_tables_are_listed_in_one_place():
    assert set(ACTING_OSQUERY_TABLES) == set(EFFECTS)


@pytest.mark.parametrize(
    "query",
    [
        "SELECT pid, name FROM processes WHERE name = 'curl'",
        "SELECT path FROM file WHERE path = '/usr/bin/curl'",
        "SELECT 'yara' AS tool, version FROM os_version",
        "SELECT * FROM curl_history_is_not_a_table",
    ],
)
def test_a_query_that_only_mentions_those_names_in_text_is_kept(query):
    assert validate_osquery(query) == query


def test_an_invisible_character_in_a_query_is_refused():
    query = "SELECT * FROM users WHERE username = 'root\u202e'"
    with pytest.raises(ValidationError) as exc:
        validate_osquery(query)
    assert exc.value.messages == [
        "`SELECT * FROM users WHERE username = 'root\\u202e'` holds U+202E RIGHT-TO-LEFT "
        "OVERRIDE: expected visible characters only, so that the approver reads what will run "
        "(retype the text rather than paste it)."
    ]

"""The CSV export is reversible by one stated rule, and the README's re-verification procedure,
run as written there, verifies an export full of cells that start like formulas or quotes."""

import csv
import io
import re
from pathlib import Path

import pytest
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st

from audit.chain import record
from audit.context import AuditContext
from audit.models import AuditEvent, Source
from audit.views import _cell

from .conftest import client_for

pytestmark = pytest.mark.django_db

README = Path(__file__).resolve().parent.parent / "README.md"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Every start a spreadsheet runs, every start of an escaped cell, and their look-alikes.
HOSTILE = [
    "=1+1",
    "+1",
    "-1",
    "@SUM(A1)",
    "\tTabbed",
    "\rReturned",
    "'",
    "'quoted",
    "'=1+1",
    "''=1+1",
    "'+1",
    "'-1",
    "'@x",
    "'\t",
    "'\r=1",
    "''",
    "\n=1",
    '"=1"',
    ",=1",
    " =1",
    "\u200b=1",
    "\u202e=1",
    "＝1",
    "=" * 150,
    "é'=",
    "",
]


def readme_block() -> str:
    """The Python block after the `re-verify-export` marker of the README, as printed there."""
    text = README.read_text(encoding="utf-8")
    found = re.search(r"<!-- re-verify-export -->\n```python\n(.*?)\n```", text, re.DOTALL)
    assert found, "README.md has no re-verify-export block"
    return found.group(1)


def readme_verify_export():
    namespace: dict = {}
    exec(compile(readme_block(), "README.md", "exec"), namespace)  # noqa: S102 - our own README
    return namespace["verify_export"]


def export(user, tmp_path, **params) -> Path:
    response = client_for(user).get(reverse("audit_export", args=["acme"]), params)
    assert response.status_code == 200
    path = tmp_path / "export.csv"
    path.write_bytes(b"".join(response.streaming_content))
    return path


def unescaped(cell: str) -> str:
    """The README's rule, written again from its words."""
    return cell[1:] if cell.startswith("'") else cell


@pytest.fixture
def hostile_log(acme, admin):
    """One event per hostile text, in the user name and the user agent, and an event whose
    empty cells are null (actor, request, address) or the empty string (the texts)."""
    events = []
    for n, text in enumerate(HOSTILE):
        events.append(
            record(
                acme,
                "settings.changed",
                actor=admin if n % 2 else None,
                actor_username=text,
                role="admin" if n % 3 else "",
                data={"text": text, "n": n, "nested": [text, {"x": text}]},
                context=AuditContext(Source.WEB, "2001:db8::1" if n % 2 else None, text),
            )
        )
    return events


def test_the_readmes_own_code_verifies_an_export_of_every_hostile_start(
    hostile_log, auditor, tmp_path
):
    path = export(auditor, tmp_path, verb="settings.changed")
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))
    assert len(rows) == len(HOSTILE)
    assert readme_verify_export()(path) == []


@pytest.mark.parametrize("text", ["'=1+1", "''", "'", "'quoted"])
def test_the_readme_finds_a_cell_read_back_one_quote_short(hostile_log, auditor, tmp_path, text):
    """What the old export did to `'=…`: the cell reads back without its own quote."""
    path = export(auditor, tmp_path, verb="settings.changed")
    with path.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    changed = next(row for row in rows if unescaped(row["user_agent"]) == text)
    assert changed["user_agent"] == "'" + text
    changed["user_agent"] = text
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert readme_verify_export()(path) == [changed["id"]]


def test_every_cell_reads_back_as_stored(hostile_log, auditor, tmp_path):
    path = export(auditor, tmp_path, verb="settings.changed")
    with path.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    for row, text in zip(rows, HOSTILE, strict=True):
        event = AuditEvent.objects.get(pk=row["id"])
        assert unescaped(row["actor_username"]) == event.actor_username == text
        assert unescaped(row["user_agent"]) == event.user_agent == text
        assert unescaped(row["role"]) == event.role
        for column, cell in row.items():
            assert not cell.startswith(FORMULA_STARTS), (column, cell)


def test_empty_cells_are_null_in_four_columns_and_empty_text_elsewhere(acme, auditor, tmp_path):
    record(acme, "settings.changed", actor_username="", context=AuditContext(Source.SYSTEM))
    path = export(auditor, tmp_path, verb="settings.changed")
    with path.open(newline="", encoding="utf-8") as file:
        [row] = list(csv.DictReader(file))
    event = AuditEvent.objects.get(pk=row["id"])
    assert (event.actor_id, event.request_id, event.ip_address) == (None, None, None)
    assert (event.actor_username, event.role, event.action_key, event.user_agent) == ("",) * 4
    empty = {column for column, cell in row.items() if cell == ""}
    assert empty == {
        "actor_id",
        "request_id",
        "request",
        "ip_address",
        "actor_username",
        "role",
        "action_key",
        "user_agent",
    }
    assert readme_verify_export()(path) == []


@given(st.text())
def test_the_rule_is_reversible_and_leaves_no_formula(text):
    cell = _cell(text)
    assert unescaped(cell) == text
    assert not cell.startswith(FORMULA_STARTS)
    assert cell == text or cell == "'" + text


@pytest.mark.parametrize("value", [None, 0, 12, -3, 1.5, "'", "''", "x"])
def test_the_rule_holds_for_any_value(value):
    expected = "" if value is None else str(value)
    assert unescaped(_cell(value)) == expected

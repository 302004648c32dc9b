"""verify_audit_log with several processes, each checking parts of the chains: the same
verdict, the same first break and the same count of checked events as one process walking
every chain from its start, wherever the break lies relative to the parts."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from audit import verification
from audit.chain import chain_of, event_hash, record
from audit.models import AuditEvent

from .test_audit_chain import catalog_restored_afterwards  # noqa: F401 - a fixture
from .test_audit_jam import triggers_off

pytestmark = [
    pytest.mark.postgresql,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("catalog_restored_afterwards", "requires_postgresql"),
]

# Parts of 7 events: acme's 40 events make parts (0, 7], (7, 14], ... (35, 40].
PART = 7


@pytest.fixture
def log(acme, globex, admin, monkeypatch):
    """40 acme events and 15 globex events, committed; parts of 7 events."""
    monkeypatch.setattr(verification, "MIN_PART_EVENTS", PART)
    acme_events = [record(acme, "settings.changed", actor=admin, data={"n": n}) for n in range(40)]
    globex_events = [record(globex, "settings.changed", data={"n": n}) for n in range(15)]
    return {"acme": acme_events, "globex": globex_events}


def run(jobs: int) -> tuple[str, str]:
    """What the command prints, and its error (empty when the log is intact)."""
    out = StringIO()
    try:
        call_command("verify_audit_log", "--jobs", str(jobs), stdout=out)
    except CommandError as error:
        assert error.returncode == 1
        return out.getvalue(), str(error)
    return out.getvalue().split(" in ", 2)[0], ""


def test_an_intact_log_is_intact_with_two_processes(log):
    assert run(2) == run(1) == ("Checked 55 events", "")


def delete(events, position):
    with triggers_off() as cursor:
        cursor.execute("DELETE FROM approvals_auditevent WHERE id = %s", [events[position].pk])


def delete_two_parts(events, position):
    for number in range(position, position + 2 * PART):
        delete(events, number)


def alter(events, position):
    with triggers_off() as cursor:
        cursor.execute(
            "UPDATE approvals_auditevent SET verb = 'x' WHERE id = %s", [events[position].pk]
        )


def rehash(events, position):
    forged = AuditEvent.objects.get(pk=events[position].pk)
    forged.data = {"n": "forged"}
    forged.hash = event_hash(forged)
    with triggers_off() as cursor:
        cursor.execute(
            "UPDATE approvals_auditevent SET data = %s, hash = %s WHERE id = %s",
            ['{"n": "forged"}', forged.hash, forged.pk],
        )


@pytest.mark.parametrize(
    "tamper, chain, position, checked, named, problem",
    [
        # The first event of a part is gone: the part's first row is 16, where 15 was expected.
        (delete, "acme", 14, 15, 16, "missing event"),
        # The last event of a part is gone: the next part stands after event 13.
        (delete, "acme", 13, 14, 15, "missing event"),
        # Two whole parts (sequences 8 to 21) are gone.
        (delete_two_parts, "acme", 7, 8, 22, "missing event"),
        (alter, "acme", 14, 15, 15, "altered content"),
        (alter, "acme", 39, 40, 40, "altered content"),
        # The last event of a part rewritten with a fresh hash: the next part's first link.
        (rehash, "acme", 13, 15, 15, "broken link"),
        (rehash, "globex", 6, 8, 8, "broken link"),
    ],
    ids=[
        "first-of-a-part-deleted",
        "last-of-a-part-deleted",
        "whole-parts-deleted",
        "first-of-a-part-altered",
        "last-event-altered",
        "link-between-parts",
        "second-chain",
    ],
)
def test_the_first_break_and_the_count_are_those_of_one_walk(
    log, tamper, chain, position, checked, named, problem
):
    events = log[chain]
    tamper(events, position)

    alone, several = run(1), run(2)

    assert several == alone
    printed, error = several
    # Chains are checked in the order of their names; the other one may come first, whole.
    other = "globex" if chain == "acme" else "acme"
    if chain_of(log[other][0].organization) < chain_of(events[0].organization):
        checked += len(log[other])
    assert printed == f"Checked {checked} events.\n"
    where = f"Chain org:{events[0].organization_id}, sequence {named}"
    assert f"Tampering detected. {where} (event {events[named - 1].pk}): {problem}." in error

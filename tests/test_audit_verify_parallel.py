"""verify_audit_log with several processes, each checking parts of the chains: the same
verdict, the same first break and the same count of checked events as one process walking
every chain from its start, wherever the break lies relative to the parts."""

import os
import subprocess
import sys
import threading
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from audit import verification
from audit.chain import chain_of, record

from .test_audit_chain import catalog_restored_afterwards  # noqa: F401 - a fixture
from .test_audit_jam import forge_with_a_fresh_hash, triggers_off
from .test_celery_worker import worker_database_url

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
    """What the command prints, and its error (empty when the log is intact).

    One process: called here. Several: `manage.py verify_audit_log` in a process of its own,
    as an operator runs it; this one may hold other threads (a live server of the browser
    tests), and a process with other threads checks alone.
    """
    if jobs == 1:
        out = StringIO()
        try:
            call_command("verify_audit_log", "--jobs", "1", stdout=out)
        except CommandError as error:
            assert error.returncode == 1
            return out.getvalue(), str(error)
        return out.getvalue().split(" in ", 2)[0], ""
    finished = subprocess.run(
        [sys.executable, "manage.py", "verify_audit_log", "--jobs", str(jobs)]
        + ["--part-events", str(PART)],
        cwd=settings.BASE_DIR,
        env={
            **os.environ,
            "DATABASE_URL": worker_database_url(),
            "DATABASE_CONN_MAX_AGE": "0",
            "SECRET_KEY": "insecure-key-for-the-command-under-test",
            "DEBUG": "false",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if finished.returncode == 0:
        assert finished.stderr == ""
        return finished.stdout.split(" in ", 2)[0], ""
    assert finished.returncode == 1, finished.stderr
    return finished.stdout, finished.stderr.removeprefix("CommandError: ").rstrip("\n")


def test_a_process_with_other_threads_checks_alone(log, monkeypatch):
    def no_fork(*args, **kwargs):
        raise AssertionError("a process with other threads must not fork")

    monkeypatch.setattr(verification, "ProcessPoolExecutor", no_fork)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        out = StringIO()
        call_command("verify_audit_log", "--jobs", "2", stdout=out)
    finally:
        stop.set()
        other.join()
    assert out.getvalue().startswith("Checked 55 events")


def test_a_part_of_no_events_is_refused():
    with pytest.raises(CommandError, match="--part-events 0: expected 1 or more events"):
        call_command("verify_audit_log", "--part-events", "0", stdout=StringIO())


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
    forge_with_a_fresh_hash(events[position].pk)


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

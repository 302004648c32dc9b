"""The database refuses an audit event that does not continue its chain from the chain's head,
and moves the head to each event it accepts, whoever inserts it.

A row planted with a wrong sequence or prev_hash is refused; one that links to the head becomes
its chain's next event (verify_audit_log then names it if its hash is wrong), so later events
still find their place. Either way the chain cannot be jammed by a row beyond its head.
On SQLite, a migration that rebuilds the events table drops these triggers: re-create them.
"""

from django.db import migrations
from django.db.utils import NotSupportedError

EVENTS = "approvals_auditevent"
HEADS = "approvals_auditchainhead"
MESSAGE = "An audit event must continue its chain"

# One check per INSERT statement: a bulk append of thousands of events moves each head once.
POSTGRESQL_INSTALL = [
    f"""
    CREATE FUNCTION audit_event_continues_its_chain() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE
        run record;
        head record;
        tail record;
        stray bigint;
    BEGIN
        FOR run IN
            SELECT chain, min(sequence) AS first_sequence, max(sequence) AS last_sequence,
                   count(*) AS events
            FROM inserted GROUP BY chain ORDER BY chain
        LOOP
            SELECT last_sequence, last_hash INTO head
            FROM {HEADS} WHERE chain = run.chain FOR UPDATE;
            IF NOT FOUND THEN
                RAISE EXCEPTION '{MESSAGE}: chain % has no head.', run.chain
                    USING ERRCODE = 'integrity_constraint_violation';
            END IF;
            IF run.first_sequence <> head.last_sequence + 1
               OR run.last_sequence - run.first_sequence + 1 <> run.events THEN
                RAISE EXCEPTION '{MESSAGE}: chain % is at sequence %, not before sequences % to %.',
                    run.chain, head.last_sequence, run.first_sequence, run.last_sequence
                    USING ERRCODE = 'integrity_constraint_violation';
            END IF;
            SELECT added.sequence INTO stray
            FROM inserted added
            LEFT JOIN inserted prior ON prior.chain = added.chain
                AND prior.sequence = added.sequence - 1
            WHERE added.chain = run.chain
              AND added.prev_hash IS DISTINCT FROM
                  CASE WHEN added.sequence = run.first_sequence THEN head.last_hash
                       ELSE prior.hash END
            ORDER BY added.sequence LIMIT 1;
            IF FOUND THEN
                RAISE EXCEPTION '{MESSAGE}: the prev_hash of sequence % of chain % is not the '
                    'hash of the event before it.', stray, run.chain
                    USING ERRCODE = 'integrity_constraint_violation';
            END IF;
            SELECT sequence, hash, timestamp INTO tail
            FROM inserted WHERE chain = run.chain AND sequence = run.last_sequence;
            UPDATE {HEADS}
            SET last_sequence = tail.sequence, last_hash = tail.hash,
                last_timestamp = tail.timestamp
            WHERE chain = run.chain;
        END LOOP;
        RETURN NULL;
    END
    $$;
    """,
    f"""
    CREATE TRIGGER audit_event_continues_its_chain
    AFTER INSERT ON {EVENTS}
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION audit_event_continues_its_chain();
    """,
]
POSTGRESQL_REMOVE = [
    f"DROP TRIGGER IF EXISTS audit_event_continues_its_chain ON {EVENTS};",
    "DROP FUNCTION IF EXISTS audit_event_continues_its_chain();",
]

# SQLite fires row triggers row by row, the AFTER trigger of one row before the BEFORE of the next.
SQLITE_INSTALL = [
    f"""
    CREATE TRIGGER audit_event_continues_its_chain BEFORE INSERT ON {EVENTS}
    WHEN NOT EXISTS (
        SELECT 1 FROM {HEADS}
        WHERE chain = NEW.chain AND last_sequence + 1 = NEW.sequence
          AND last_hash = NEW.prev_hash
    )
    BEGIN
        SELECT RAISE(ABORT, '{MESSAGE}: its sequence must follow the head''s, and its prev_hash
        be the head''s hash.');
    END;
    """,
    f"""
    CREATE TRIGGER audit_event_moves_its_chain_head AFTER INSERT ON {EVENTS}
    BEGIN
        UPDATE {HEADS}
        SET last_sequence = NEW.sequence, last_hash = NEW.hash, last_timestamp = NEW.timestamp
        WHERE chain = NEW.chain;
    END;
    """,
]
SQLITE_REMOVE = [
    "DROP TRIGGER IF EXISTS audit_event_continues_its_chain;",
    "DROP TRIGGER IF EXISTS audit_event_moves_its_chain_head;",
]

STATEMENTS = {
    "postgresql": (POSTGRESQL_INSTALL, POSTGRESQL_REMOVE),
    "sqlite": (SQLITE_INSTALL, SQLITE_REMOVE),
}


def _statements(schema_editor, install: bool) -> list[str]:
    vendor = schema_editor.connection.vendor
    if vendor not in STATEMENTS:
        raise NotSupportedError(
            f"No audit chain triggers for the {vendor} database: "
            "the portal supports PostgreSQL and SQLite."
        )
    return STATEMENTS[vendor][0 if install else 1]


def install(apps, schema_editor):
    for statement in _statements(schema_editor, install=True):
        schema_editor.execute(statement, params=None)


def remove(apps, schema_editor):
    for statement in _statements(schema_editor, install=False):
        schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0002_sign_in_tallies"),
    ]

    operations = [
        migrations.RunPython(install, remove),
    ]

"""The database itself refuses UPDATE and DELETE on audit events, whoever connects.

TRUNCATE stays possible (row triggers do not fire for it): test databases are flushed with it
on PostgreSQL. The chain heads are not protected: every append updates one.
"""

from django.db import migrations
from django.db.utils import NotSupportedError

TABLE = "approvals_auditevent"
MESSAGE = "Audit events are append-only: UPDATE and DELETE are refused."

POSTGRESQL_INSTALL = [
    f"""
    CREATE FUNCTION approvals_audit_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '{MESSAGE} (% of audit event %)', TG_OP, OLD.id
            USING ERRCODE = 'restrict_violation';
    END
    $$;
    """,
    f"""
    CREATE TRIGGER approvals_audit_append_only
    BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION approvals_audit_append_only();
    """,
]
POSTGRESQL_REMOVE = [
    f"DROP TRIGGER IF EXISTS approvals_audit_append_only ON {TABLE};",
    "DROP FUNCTION IF EXISTS approvals_audit_append_only();",
]

SQLITE_INSTALL = [
    f"""
    CREATE TRIGGER approvals_audit_no_update BEFORE UPDATE ON {TABLE}
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END;
    """,
    f"""
    CREATE TRIGGER approvals_audit_no_delete BEFORE DELETE ON {TABLE}
    BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END;
    """,
]
SQLITE_REMOVE = [
    "DROP TRIGGER IF EXISTS approvals_audit_no_update;",
    "DROP TRIGGER IF EXISTS approvals_audit_no_delete;",
]

STATEMENTS = {
    "postgresql": (POSTGRESQL_INSTALL, POSTGRESQL_REMOVE),
    "sqlite": (SQLITE_INSTALL, SQLITE_REMOVE),
}


def _statements(schema_editor, install: bool) -> list[str]:
    vendor = schema_editor.connection.vendor
    if vendor not in STATEMENTS:
        raise NotSupportedError(
            f"No append-only triggers for the {vendor} database: "
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
        ("approvals", "0002_audit_indexes"),
    ]

    operations = [
        migrations.RunPython(install, remove),
    ]

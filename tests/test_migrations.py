"""The audit log's move from the approvals app to the audit app (approvals 0006, audit 0001)
changes Django's model state only: a chain written before it is still there, intact, append-only,
extended by new events and shown on the log page after it."""

import hashlib
import importlib
import json
from datetime import UTC, datetime
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from actions.sync import sync_catalog
from audit.chain import record
from audit.models import AuditEvent
from responseportal.models import Organization

from .conftest import client_for

LAST_BEFORE_THE_MOVE = ("approvals", "0005_notify_webhook_url")
# Back to approvals 0005, with no audit migration applied (it depends on approvals 0006).
BEFORE_THE_MOVE = [LAST_BEFORE_THE_MOVE, ("audit", None)]
GENESIS = "0" * 64
TRIGGERS = importlib.import_module("approvals.migrations.0003_audit_append_only")


def migrate(targets=None) -> MigrationExecutor:
    """Migrate the test database to `targets` (the latest migrations without), on a fresh graph."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets or executor.loader.graph.leaf_nodes())
    executor.loader.build_graph()
    return executor


def expected_hash(fields: dict) -> str:
    """SHA-256 over the canonical serialization that audit/chain.py documents, written out again."""
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def refused(sql: str, event_id: int) -> None:
    """The database itself refuses `sql` on the event: the append-only trigger is in place."""
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql, [event_id])


@pytest.fixture(scope="module")
def catalog_restored_afterwards(django_db_blocker):
    """The flush after a transactional test empties every table, the catalog's included."""
    yield
    with django_db_blocker.unblock():
        sync_catalog()


@pytest.fixture
def latest_migrations_afterwards():
    """However the test ends, the database is back at the latest migrations for the next tests.

    On SQLite the flush after a transactional test DELETEs every row, which the append-only
    triggers refuse: the audit events go first here, with the triggers off for that moment.
    """
    yield
    migrate()
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            for statement in TRIGGERS.SQLITE_REMOVE:
                cursor.execute(statement)
            cursor.execute("DELETE FROM approvals_auditevent")
            for statement in TRIGGERS.SQLITE_INSTALL:
                cursor.execute(statement)


def write_a_chain_before_the_move(apps) -> tuple[int, list[tuple[int, str, str]]]:
    """With the models as they were (audit events in approvals): an organization, its admin, a
    request and three events chained. The organization's id and each (sequence, prev, hash)."""
    organization = apps.get_model("responseportal", "Organization").objects.create(
        name="Initech", slug="initech"
    )
    user = apps.get_model("auth", "User").objects.create(username="initech-admin", password="!")
    apps.get_model("responseportal", "Membership").objects.create(
        user=user, organization=organization, role="admin"
    )
    action, _ = apps.get_model("actions", "ResponseAction").objects.get_or_create(
        key="collect_file",
        defaults={"name": "Collect file", "description": "", "category": "recommended"},
    )
    action_request = apps.get_model("approvals", "ActionRequest").objects.create(
        organization=organization,
        requester=user,
        action=action,
        approval_mode="manual",
        status="pending",
        parameters={"endpoints": ["ws-042"]},
    )
    chain = f"org:{organization.pk}"
    # (timestamp, its canonical form, the rest of the event): the canonical forms written by
    # hand, as an auditor reading the module doc of audit/chain.py would.
    events = [
        (
            datetime(2025, 1, 31, 23, 59, 59, 123456, tzinfo=UTC),
            "2025-01-31T23:59:59.123456Z",
            {
                "verb": "request.submitted",
                "request_id": action_request.pk,
                "action_key": "collect_file",
                "data": {"note": "Zürich office", "endpoints": 1},
                "source": "web",
                "ip_address": "2001:db8::1",
                "user_agent": "Mozilla/5.0",
            },
        ),
        (
            datetime(2025, 2, 1, 8, 0, tzinfo=UTC),
            "2025-02-01T08:00:00.000000Z",
            {
                "verb": "settings.changed",
                "request_id": None,
                "action_key": "",
                "data": {"pending_lifetime_hours": {"before": 72, "after": 24}},
                "source": "web",
                "ip_address": "192.0.2.10",
                "user_agent": "",
            },
        ),
        (
            datetime(2025, 2, 1, 9, 30, 0, 5, tzinfo=UTC),
            "2025-02-01T09:30:00.000005Z",
            {
                "verb": "request.approved",
                "request_id": action_request.pk,
                "action_key": "collect_file",
                "data": {},
                "source": "email",
                "ip_address": None,
                "user_agent": "",
            },
        ),
    ]
    AuditEvent = apps.get_model("approvals", "AuditEvent")
    links, prev_hash = [], GENESIS
    for sequence, (timestamp, canonical_time, rest) in enumerate(events, start=1):
        fields = {
            "chain": chain,
            "sequence": sequence,
            "timestamp": canonical_time,
            "organization_id": organization.pk,
            "actor_id": user.pk,
            "actor_username": user.username,
            "role": "admin",
            "prev_hash": prev_hash,
            **rest,
        }
        hash_ = expected_hash(fields)
        AuditEvent.objects.create(**{**fields, "timestamp": timestamp, "hash": hash_})
        links.append((sequence, prev_hash, hash_))
        prev_hash = hash_
    apps.get_model("approvals", "AuditChainHead").objects.create(
        chain=chain, last_sequence=len(events), last_hash=prev_hash, last_timestamp=timestamp
    )
    return organization.pk, links


@pytest.mark.django_db(transaction=True)
def test_a_chain_written_before_the_move_survives_it(
    catalog_restored_afterwards, latest_migrations_afterwards
):
    executor = migrate(BEFORE_THE_MOVE)
    old_apps = executor.loader.project_state(LAST_BEFORE_THE_MOVE).apps
    assert old_apps.get_model("approvals", "AuditEvent")._meta.db_table == "approvals_auditevent"
    assert "audit" not in old_apps.all_models
    organization_id, links = write_a_chain_before_the_move(old_apps)

    migrate()

    organization = Organization.objects.get(pk=organization_id)
    out = StringIO()
    call_command("verify_audit_log", "--org", "initech", stdout=out)
    assert "Checked 3 events in 1 chain" in out.getvalue()
    assert "intact" in out.getvalue()

    chain = AuditEvent.objects.filter(organization=organization).order_by("sequence")
    assert list(chain.values_list("sequence", "prev_hash", "hash")) == links

    refused("UPDATE approvals_auditevent SET verb = 'request.rejected' WHERE id = %s", chain[0].pk)
    refused("DELETE FROM approvals_auditevent WHERE id = %s", chain[2].pk)

    appended = record(organization, "settings.changed", data={"after": "the move"})
    assert (appended.sequence, appended.prev_hash) == (4, links[-1][2])
    out = StringIO()
    call_command("verify_audit_log", "--org", "initech", stdout=out)
    assert "Checked 4 events in 1 chain" in out.getvalue()

    admin = get_user_model().objects.get(username="initech-admin")
    response = client_for(admin).get("/orgs/initech/audit/")
    assert response.status_code == 200
    # Signing the admin in wrote an event too: the old ones are the last three of the page.
    shown = [(event.sequence, event.hash) for event in response.context["events"]]
    assert shown[-3:] == [(sequence, hash_) for sequence, _, hash_ in reversed(links)]
    assert shown[-4][0] == appended.sequence

"""The audit log moves to the `audit` app: in Django's model state only.

The tables (`approvals_auditevent`, `approvals_auditchainhead`) keep their names, rows,
indexes and the append-only triggers of 0003; `audit` 0001 takes the models over in state.
"""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("approvals", "0005_notify_webhook_url"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="AuditChainHead"),
                migrations.DeleteModel(name="AuditEvent"),
            ],
            database_operations=[],
        ),
    ]

"""The audit log's models, taken over from the approvals app (its migration 0006) in state only:
the tables it created keep their names, rows, indexes and append-only triggers."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('approvals', '0006_audit_log_moves_to_audit_app'),
        ('responseportal', '0001_initial'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name='AuditChainHead',
                    fields=[
                        ('chain', models.CharField(max_length=40, primary_key=True, serialize=False)),
                        ('last_sequence', models.PositiveBigIntegerField(default=0)),
                        ('last_hash', models.CharField(default='0000000000000000000000000000000000000000000000000000000000000000', max_length=64)),
                        ('last_timestamp', models.DateTimeField(blank=True, null=True)),
                    ],
                    options={
                        'db_table': 'approvals_auditchainhead',
                    },
                ),
                migrations.CreateModel(
                    name='AuditEvent',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('chain', models.CharField(max_length=40)),
                        ('sequence', models.PositiveBigIntegerField()),
                        ('timestamp', models.DateTimeField(default=django.utils.timezone.now)),
                        ('actor_username', models.CharField(blank=True, max_length=150)),
                        ('role', models.CharField(blank=True, max_length=20)),
                        ('verb', models.CharField(max_length=64)),
                        ('action_key', models.CharField(blank=True, max_length=60)),
                        ('data', models.JSONField(blank=True, default=dict)),
                        ('source', models.CharField(choices=[('web', 'Web'), ('email', 'E-mail link'), ('system', 'System')], default='web', max_length=10)),
                        ('ip_address', models.GenericIPAddressField(blank=True, null=True)),
                        ('user_agent', models.CharField(blank=True, max_length=500)),
                        ('prev_hash', models.CharField(max_length=64)),
                        ('hash', models.CharField(max_length=64)),
                        ('actor', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('organization', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='audit_events', to='responseportal.organization')),
                        ('request', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='events', to='approvals.actionrequest')),
                    ],
                    options={
                        'db_table': 'approvals_auditevent',
                        'ordering': ['-timestamp', '-id'],
                        'indexes': [models.Index(fields=['request', 'timestamp'], name='audit_request_time'), models.Index(fields=['chain', 'verb', '-sequence'], name='audit_chain_verb'), models.Index(fields=['chain', 'actor_username', '-sequence'], name='audit_chain_actor'), models.Index(fields=['chain', 'action_key', '-sequence'], name='audit_chain_action'), models.Index(fields=['chain', 'source', '-sequence'], name='audit_chain_source'), models.Index(fields=['chain', 'timestamp', 'sequence'], name='audit_chain_time')],
                        'constraints': [models.UniqueConstraint(fields=('chain', 'sequence'), name='one_event_per_chain_link')],
                    },
                ),
            ],
        ),
    ]

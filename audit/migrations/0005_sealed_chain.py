"""From one chain locked per organization to events sealed into the chain after commit (1/3):
the new tables and columns, next to the old ones. 0006 carries the chains over; 0007 drops
what they replace."""

import django.db.models.deletion
from django.db import migrations, models

import audit.models


def drop_legacy_guard(apps, schema_editor):
    """0002's triggers, under their old names; 0007 installs the guard on every audit table."""
    statements = {
        "postgresql": [
            "DROP TRIGGER IF EXISTS audit_event_no_update_delete ON audit_auditevent",
            "DROP TRIGGER IF EXISTS audit_event_no_truncate ON audit_auditevent",
        ],
        "sqlite": [
            "DROP TRIGGER IF EXISTS audit_event_no_update",
            "DROP TRIGGER IF EXISTS audit_event_no_delete",
        ],
    }
    with schema_editor.connection.cursor() as cursor:
        for statement in statements[schema_editor.connection.vendor]:
            cursor.execute(statement)


ORGANIZATION = "organizations.organization"


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0004_compliance_group"),
        ("decisions", "0003_slack_message"),
        ("organizations", "0003_organization_reminder_points"),
    ]

    operations = [
        migrations.RunPython(drop_legacy_guard, migrations.RunPython.noop),
        migrations.AddField(
            model_name="auditevent",
            name="content_hash",
            field=models.CharField(default="", max_length=64),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="auditevent",
            name="txid",
            field=models.BigIntegerField(
                blank=True, db_default=audit.models.CurrentTransactionId(), editable=False, null=True
            ),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["txid"], name="audit_event_txid"),
        ),
        migrations.CreateModel(
            name="AuditLink",
            fields=[
                (
                    "event",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.PROTECT,
                        primary_key=True,
                        related_name="link",
                        serialize=False,
                        to="audit.auditevent",
                    ),
                ),
                (
                    "organization",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT, related_name="+", to=ORGANIZATION
                    ),
                ),
                (
                    "seq",
                    models.PositiveBigIntegerField(help_text="Position in the organization's chain, from 1."),
                ),
                ("prev_hash", models.CharField(max_length=64)),
                ("hash", models.CharField(max_length=64)),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("organization", "seq"), name="audit_link_unique_seq")
                ],
            },
        ),
        migrations.CreateModel(
            name="AuditSeal",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("sealed_at", models.DateTimeField()),
                ("horizon", models.BigIntegerField()),
                ("events", models.PositiveIntegerField()),
            ],
        ),
        migrations.CreateModel(
            name="AuditCheckpoint",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "organization",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="audit_checkpoints",
                        to=ORGANIZATION,
                    ),
                ),
                ("size", models.PositiveBigIntegerField()),
                ("head_hash", models.CharField(max_length=64)),
                ("sealed_at", models.DateTimeField()),
                ("key_id", models.CharField(max_length=32)),
                ("body", models.TextField()),
                ("signature", models.CharField(max_length=128)),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("organization", "size"), name="audit_checkpoint_unique_size"
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="CheckpointPublication",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("sink", models.CharField(max_length=16)),
                (
                    "organization",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to=ORGANIZATION
                    ),
                ),
                ("size", models.PositiveBigIntegerField(default=0)),
                ("failures", models.PositiveIntegerField(default=0)),
                ("next_attempt_at", models.DateTimeField(blank=True, null=True)),
                ("last_error", models.TextField(blank=True)),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("sink", "organization"), name="checkpoint_publication_unique"
                    )
                ],
            },
        ),
    ]

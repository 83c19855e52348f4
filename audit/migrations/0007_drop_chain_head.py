"""From one chain locked per organization to events sealed into the chain after commit (3/3):
drop the old per-event chain columns and the chain head, and guard every audit table."""

from django.db import migrations


def install_guard(apps, schema_editor):
    from audit.guard import install_guard

    install_guard(schema_editor.connection)


def remove_guard(apps, schema_editor):
    from audit.guard import remove_guard

    remove_guard(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("audit", "0006_convert_chains")]

    operations = [
        migrations.RemoveConstraint(model_name="auditevent", name="audit_event_unique_seq"),
        migrations.RemoveField(model_name="auditevent", name="hash"),
        migrations.RemoveField(model_name="auditevent", name="prev_hash"),
        migrations.RemoveField(model_name="auditevent", name="seq"),
        migrations.DeleteModel(name="ChainHead"),
        migrations.RunPython(install_guard, remove_guard),
    ]

"""The audit table's first guard: triggers that refuse UPDATE, DELETE and TRUNCATE.

Frozen here as it was (0005 replaces it with audit/guard.py's guard on every audit table): a
migration must not change meaning when the code it once imported moves on.
"""

from django.db import migrations

_INSTALL = {
    "postgresql": [
        """
        CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit events are append-only: % is not allowed', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END $$
        """,
        """
        CREATE TRIGGER audit_event_no_update_delete BEFORE UPDATE OR DELETE ON audit_auditevent
        FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()
        """,
        """
        CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_auditevent
        FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only()
        """,
    ],
    "sqlite": [
        f"""
        CREATE TRIGGER IF NOT EXISTS audit_event_no_{op.lower()} BEFORE {op} ON audit_auditevent
        BEGIN SELECT RAISE(ABORT, 'audit events are append-only: {op} is not allowed'); END
        """
        for op in ("UPDATE", "DELETE")
    ],
}
_REMOVE = {
    "postgresql": [
        "DROP TRIGGER IF EXISTS audit_event_no_update_delete ON audit_auditevent",
        "DROP TRIGGER IF EXISTS audit_event_no_truncate ON audit_auditevent",
        "DROP FUNCTION IF EXISTS audit_event_append_only()",
    ],
    "sqlite": [f"DROP TRIGGER IF EXISTS audit_event_no_{op}" for op in ("update", "delete")],
}


def _run(schema_editor, statements) -> None:
    with schema_editor.connection.cursor() as cursor:
        for statement in statements[schema_editor.connection.vendor]:
            cursor.execute(statement)


def install(apps, schema_editor):
    _run(schema_editor, _INSTALL)


def remove(apps, schema_editor):
    _run(schema_editor, _REMOVE)


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [migrations.RunPython(install, remove)]

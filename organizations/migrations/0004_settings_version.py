"""Organization.settings_version: raised by triggers on every write to an organization's
policy rules or Slack settings, so that each process may keep them in memory and still see a
change with the next request (decisions/selectors.create_settings).

Triggers rather than Python: rules are also changed with QuerySet.update(), bulk deletes in
the admin, or SQL, none of which passes through a model's save(). A third trigger keeps the
version from going down when an organization saved from an older copy writes it back. The
column has a database default, so rows inserted by code or SQL that does not know it are valid.

Note for future migrations: SQLite rebuilds a table on most ALTERs and its triggers go with
it; a migration that alters decisions_policy, notifications_slacksettings or
organizations_organization must install these again.
"""

from django.db import migrations, models

WATCHED = ("decisions_policy", "notifications_slacksettings")

_POSTGRES_INSTALL = [
    """
    CREATE OR REPLACE FUNCTION organization_settings_changed() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE
        ids bigint[];
    BEGIN
        IF TG_OP = 'INSERT' THEN
            ids := ARRAY[NEW.organization_id];
        ELSIF TG_OP = 'DELETE' THEN
            ids := ARRAY[OLD.organization_id];
        ELSE
            ids := ARRAY[OLD.organization_id, NEW.organization_id];
        END IF;
        -- One step per change, however many rows name the organization.
        UPDATE organizations_organization SET settings_version = settings_version + 1
        WHERE id = ANY(ids);
        RETURN NULL;
    END $$
    """,
    *(
        f"""
        CREATE OR REPLACE TRIGGER {table}_settings_changed AFTER INSERT OR UPDATE OR DELETE ON {table}
        FOR EACH ROW EXECUTE FUNCTION organization_settings_changed()
        """
        for table in WATCHED
    ),
    """
    CREATE OR REPLACE FUNCTION organization_settings_version_kept() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        NEW.settings_version := GREATEST(NEW.settings_version, OLD.settings_version);
        RETURN NEW;
    END $$
    """,
    """
    CREATE OR REPLACE TRIGGER organizations_organization_settings_version_kept
    BEFORE UPDATE ON organizations_organization
    FOR EACH ROW EXECUTE FUNCTION organization_settings_version_kept()
    """,
]
_POSTGRES_REMOVE = [
    *(f"DROP TRIGGER IF EXISTS {table}_settings_changed ON {table}" for table in WATCHED),
    "DROP TRIGGER IF EXISTS organizations_organization_settings_version_kept ON organizations_organization",
    "DROP FUNCTION IF EXISTS organization_settings_changed()",
    "DROP FUNCTION IF EXISTS organization_settings_version_kept()",
]

_SQLITE_INSTALL = [
    *(
        f"""
        CREATE TRIGGER IF NOT EXISTS {table}_settings_changed_{op.lower()} AFTER {op} ON {table}
        BEGIN
            UPDATE organizations_organization SET settings_version = settings_version + 1
            WHERE id IN ({ids});
        END
        """  # noqa: S608 (table and column names from this file, no input)
        for table in WATCHED
        for op, ids in (
            ("INSERT", "NEW.organization_id"),
            ("UPDATE", "OLD.organization_id, NEW.organization_id"),
            ("DELETE", "OLD.organization_id"),
        )
    ),
    """
    CREATE TRIGGER IF NOT EXISTS organizations_organization_settings_version_kept
    AFTER UPDATE OF settings_version ON organizations_organization
    WHEN NEW.settings_version < OLD.settings_version
    BEGIN
        UPDATE organizations_organization SET settings_version = OLD.settings_version WHERE id = NEW.id;
    END
    """,
]
_SQLITE_REMOVE = [
    *(
        f"DROP TRIGGER IF EXISTS {table}_settings_changed_{op}"
        for table in WATCHED
        for op in ("insert", "update", "delete")
    ),
    "DROP TRIGGER IF EXISTS organizations_organization_settings_version_kept",
]

_SQL = {"postgresql": (_POSTGRES_INSTALL, _POSTGRES_REMOVE), "sqlite": (_SQLITE_INSTALL, _SQLITE_REMOVE)}


def _run(schema_editor, which: int) -> None:
    statements = _SQL[schema_editor.connection.vendor][which]
    with schema_editor.connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def install(apps, schema_editor) -> None:
    _run(schema_editor, 0)


def remove(apps, schema_editor) -> None:
    _run(schema_editor, 1)


class Migration(migrations.Migration):
    dependencies = [
        ("organizations", "0003_organization_reminder_points"),
        ("decisions", "0004_stored_json_returned_on_insert"),
        ("notifications", "0006_slack_settings"),
    ]

    operations = [
        migrations.AddField(
            model_name="organization",
            name="settings_version",
            field=models.BigIntegerField(default=0, db_default=0, editable=False),
        ),
        migrations.RunPython(install, remove),
    ]

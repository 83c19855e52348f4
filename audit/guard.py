"""The audit table is append-only in the database itself, not just in the application.

Triggers reject UPDATE and DELETE (SQLite and PostgreSQL) and TRUNCATE (PostgreSQL). Note for
future migrations: SQLite rebuilds a table on most ALTERs and the triggers go with it, so a
migration that alters audit_auditevent must run install_guard again.
"""

from contextlib import contextmanager

TABLE = "audit_auditevent"

_POSTGRES_INSTALL = [
    """
    CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit events are append-only: % is not allowed', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END $$
    """,
    f"""
    CREATE TRIGGER audit_event_no_update_delete BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()
    """,
    f"""
    CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON {TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only()
    """,
]
_POSTGRES_REMOVE = [
    f"DROP TRIGGER IF EXISTS audit_event_no_update_delete ON {TABLE}",
    f"DROP TRIGGER IF EXISTS audit_event_no_truncate ON {TABLE}",
    "DROP FUNCTION IF EXISTS audit_event_append_only()",
]
_SQLITE_INSTALL = [
    f"""
    CREATE TRIGGER IF NOT EXISTS audit_event_no_{op.lower()} BEFORE {op} ON {TABLE}
    BEGIN SELECT RAISE(ABORT, 'audit events are append-only: {op} is not allowed'); END
    """
    for op in ("UPDATE", "DELETE")
]
_SQLITE_REMOVE = [f"DROP TRIGGER IF EXISTS audit_event_no_{op}" for op in ("update", "delete")]

_SQL = {
    "postgresql": (_POSTGRES_INSTALL, _POSTGRES_REMOVE),
    "sqlite": (_SQLITE_INSTALL, _SQLITE_REMOVE),
}


def _run(connection, statements: list[str]) -> None:
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def install_guard(connection) -> None:
    _run(connection, _SQL[connection.vendor][0])


def remove_guard(connection) -> None:
    _run(connection, _SQL[connection.vendor][1])


@contextmanager
def guard_lifted(connection):
    """Remove the guard for the duration of the block: what a database owner could always do.
    Tests use it to flush the database and to play the tamperer for verify_audit."""
    remove_guard(connection)
    try:
        yield
    finally:
        install_guard(connection)

"""The audit table is append-only in the database itself, not just in the application.

Triggers reject UPDATE and DELETE (SQLite and PostgreSQL) and TRUNCATE (PostgreSQL) on every
table of evidence. They stop mistakes and the application itself; a role that owns the tables
could drop them, which is why the service runs as a role that owns nothing and may only INSERT
and SELECT here (broker/db_roles.py), and why checkpoints leave the database
(audit/checkpoints.py). Note for future migrations: SQLite rebuilds a table on most ALTERs and
the triggers go with it, so a migration that alters these tables must run install_guard again.
"""

from contextlib import contextmanager

# Every table of evidence. (CheckpointPublication is bookkeeping, and is not guarded.)
TABLES = ("audit_auditevent", "audit_auditlink", "audit_auditseal", "audit_auditcheckpoint")

_POSTGRES_FUNCTION = """
    CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit events are append-only: % is not allowed', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END $$
"""
_POSTGRES_INSTALL = [_POSTGRES_FUNCTION] + [
    statement
    for table in TABLES
    for statement in (
        f"""
        CREATE OR REPLACE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table}
        FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()
        """,
        f"""
        CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
        FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only()
        """,
    )
]
_POSTGRES_REMOVE = [
    statement
    for table in TABLES
    for statement in (
        f"DROP TRIGGER IF EXISTS {table}_no_update_delete ON {table}",
        f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}",
    )
] + ["DROP FUNCTION IF EXISTS audit_event_append_only()"]
_SQLITE_INSTALL = [
    f"""
    CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table}
    BEGIN SELECT RAISE(ABORT, 'audit events are append-only: {op} is not allowed'); END
    """
    for table in TABLES
    for op in ("UPDATE", "DELETE")
]
_SQLITE_REMOVE = [
    f"DROP TRIGGER IF EXISTS {table}_no_{op}" for table in TABLES for op in ("update", "delete")
]

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

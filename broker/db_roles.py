"""Two PostgreSQL roles: the owner runs migrations, the service runs as a role that owns nothing.

A role that owns a table can always `ALTER TABLE … DISABLE TRIGGER` or drop it, so the audit
guard (audit/guard.py) only binds a role that does not own the audit tables. With
DATABASE_APP_ROLE set, every `migrate` (run as the owner) grants that role what the service
needs and no more: SELECT and INSERT on the audit tables of evidence, full row access on the
others, and use of their sequences. It cannot UPDATE, DELETE or TRUNCATE audit rows, nor
ALTER, disable triggers on or drop any table. docker-compose.yml shows the two roles.
"""

from django.conf import settings
from psycopg import sql

from audit.guard import TABLES as AUDIT_TABLES


def runtime_role_grant(connection, role: str) -> None:
    """Grant `role` the service's privileges on every table of the database (idempotent)."""
    if connection.vendor != "postgresql":
        return
    grantee = sql.Identifier(role)
    statements = [sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(grantee)]
    for table in sorted(connection.introspection.table_names()):
        name = sql.Identifier(table)
        if table in AUDIT_TABLES:
            statements += [
                sql.SQL("REVOKE ALL ON {} FROM {}").format(name, grantee),
                sql.SQL("GRANT SELECT, INSERT ON {} TO {}").format(name, grantee),
            ]
        else:
            statements.append(
                sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {}").format(name, grantee)
            )
    statements.append(sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {}").format(grantee))
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement.as_string(cursor.connection))


def grant_after_migrate(sender, using="default", **kwargs) -> None:
    from django.db import connections

    if settings.DATABASE_APP_ROLE:
        runtime_role_grant(connections[using], settings.DATABASE_APP_ROLE)

"""Django's PostgreSQL backend, its psycopg pool made to recover from a restart at once.

With CONN_HEALTH_CHECKS Django gives psycopg_pool's check_connection to the pool: each idle
connection is checked before it is handed out, and a dead one is thrown away. But the pool
then waits before checking the next (1 s, 2 s, 4 s, 8 s: its reconnection backoff), and after
a restart or a failover every idle connection is dead: with four or more pooled, a request
waits out the pool's timeout and fails although PostgreSQL is back. Here the first failed
check drains the pool instead: every connection made before it is replaced by a new one, so
the next try gets a working connection. A connection killed alone (an idle-session timeout)
costs a few needless reconnections; a restart costs one request a second's wait.
"""

from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql import base
from psycopg_pool import ConnectionPool


class DrainingPool(ConnectionPool):
    """psycopg's pool, checking each connection before handing it out, and draining itself
    when one fails the check."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, check=self._check_or_drain, **kwargs)

    def _check_or_drain(self, conn) -> None:
        try:
            self.check_connection(conn)
        except Exception:
            self.drain()  # the others were most likely cut by the same restart
            raise


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self):
        settings = self.settings_dict
        options = settings["OPTIONS"].get("pool")
        if (
            options
            and settings["CONN_HEALTH_CHECKS"]
            and not settings.get("CONN_MAX_AGE")  # Django refuses that combination: let it say so
            and self.alias != NO_DB_ALIAS
            # Django's private pool registry and connection set-up, which the stubs leave out.
            and self.alias not in self._connection_pools  # type: ignore[attr-defined]
        ):
            # As Django's own property (5.2) makes the pool, but for its class and check.
            connect_kwargs = self.get_connection_params()
            connect_kwargs["autocommit"] = True  # Django sets the mode it wants later on
            pool = DrainingPool(
                kwargs=connect_kwargs,
                open=False,  # opened on first use, as Django's
                configure=self._configure_connection,  # type: ignore[attr-defined]
                **({} if options is True else options),
            )
            self._connection_pools.setdefault(self.alias, pool)  # type: ignore[attr-defined]
        return super().pool

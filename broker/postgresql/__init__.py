"""Django's PostgreSQL backend with a connection pool that gets over a restart at once
(ENGINE = "broker.postgresql"; see base.py)."""

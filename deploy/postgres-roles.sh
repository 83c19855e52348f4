#!/bin/sh
# Run once by the postgres image on a new volume (docker-entrypoint-initdb.d): the database,
# owned by the role migrations run as, and the role the service runs as, which owns nothing.
# `migrate` grants the service role its privileges (broker/db_roles.py).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<SQL
CREATE ROLE countersign_owner LOGIN PASSWORD '${COUNTERSIGN_OWNER_PASSWORD}';
CREATE ROLE countersign_app LOGIN PASSWORD '${COUNTERSIGN_APP_PASSWORD}';
CREATE DATABASE countersign OWNER countersign_owner;
SQL
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname countersign <<SQL
ALTER SCHEMA public OWNER TO countersign_owner;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SQL

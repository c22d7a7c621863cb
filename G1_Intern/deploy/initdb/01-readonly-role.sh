#!/usr/bin/env bash
# Creates the read-only role that Airflow and pgAdmin use on a shop database.
#
# It runs once, when the database is created:
# * in Docker, from /docker-entrypoint-initdb.d of the postgres image (compose mounts it there),
#   with the container's env (pg-shop-N.env) and psql on the server's unix socket;
# * with `make run` and in the tests, from coursekit.pg.EmbeddedPostgres.run_init_script, with
#   PGHOST/PGPORT/PGPASSWORD pointing at the embedded server and the service's env file.
#
# Reads POSTGRES_USER (the owner: the generator creates its tables as this role), POSTGRES_DB,
# SHOP_READER_USER and SHOP_READER_PASSWORD. The values reach SQL only as psql variables that psql
# itself quotes (:"name" as an identifier, :'name' as a literal), so a quote or a semicolon in a
# name or password cannot change the statements.
#
# The reader may connect and SELECT, nothing else. Tables the generator creates later (or
# re-creates with --reset) are covered by ALTER DEFAULT PRIVILEGES for the owner role.
# Running it again is harmless: the role is created if missing and its password set each time.
#
# No `exit` and no `set -u`: the postgres image *sources* init scripts that are not executable.
set -e

psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet \
    --username "${POSTGRES_USER:?POSTGRES_USER is not set}" \
    --dbname "${POSTGRES_DB:-$POSTGRES_USER}" \
    --set owner="$POSTGRES_USER" \
    --set database="${POSTGRES_DB:-$POSTGRES_USER}" \
    --set reader="${SHOP_READER_USER:?SHOP_READER_USER is not set; it comes from deploy/env/pg-shop-N.env}" \
    --set reader_password="${SHOP_READER_PASSWORD:?SHOP_READER_PASSWORD is not set; it comes from deploy/env/pg-shop-N.env}" \
    <<'SQL'
SELECT format('CREATE ROLE %I', :'reader')
 WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = :'reader') \gexec
ALTER ROLE :"reader" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'reader_password';
GRANT CONNECT ON DATABASE :"database" TO :"reader";
GRANT USAGE ON SCHEMA public TO :"reader";
GRANT SELECT ON ALL TABLES IN SCHEMA public TO :"reader";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT SELECT ON TABLES TO :"reader";
SQL

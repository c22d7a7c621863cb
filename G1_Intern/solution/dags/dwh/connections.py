"""Database connections the way Airflow's docs teach: through `PostgresHook`.

The postgres provider 7.x hands out psycopg 3 connections (not psycopg2), with
the settings of the Airflow connection (`AIRFLOW_CONN_<ID>` in the grade's env
file). psycopg 3 differs from psycopg2 where it matters here: `with conn:` closes
the connection (it is not a transaction), and `conn.transaction()` inside an
implicitly opened transaction is only a savepoint. So the pipeline switches the
connection to autocommit and writes every transaction as an explicit
`with conn.transaction():` block: what is inside commits together or not at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg


def connect(conn_id: str) -> psycopg.Connection:
    """`with connect("dwh_conn") as conn:` - a psycopg 3 connection, closed on exit."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    conn = PostgresHook(postgres_conn_id=conn_id).get_conn()
    conn.autocommit = True
    return conn

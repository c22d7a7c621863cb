"""psycopg2 connections from Airflow connection ids.

Airflow's PostgresHook hands out psycopg 3 or psycopg2 connections depending on
what is installed. The pipeline is written for one driver (psycopg2, like the
generator), so it asks Airflow only for the connection's settings, which come
from `AIRFLOW_CONN_<ID>` variables in the grade's env file.
"""

from __future__ import annotations

from contextlib import closing


def connect(conn_id: str) -> closing:
    """`with connect("dwh_conn") as conn:` - a psycopg2 connection, closed on exit."""
    import psycopg2
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    return closing(
        psycopg2.connect(
            host=conn.host,
            port=conn.port or 5432,
            user=conn.login,
            password=conn.password,
            dbname=conn.schema,
            application_name=f"airflow:{conn_id}",
            connect_timeout=10,
        )
    )
